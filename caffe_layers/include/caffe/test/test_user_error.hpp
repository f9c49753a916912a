#ifndef CAFFE_TEST_TEST_USER_ERROR_HPP_
#define CAFFE_TEST_TEST_USER_ERROR_HPP_

#include <regex>
#include <string>

#include "gtest/gtest.h"

#include "caffe/util/user_error.hpp"

namespace caffe {

/// Runs `f` and expects a UserError whose message matches the ECMAScript
/// regular expression `pattern` (searched, not anchored).
template <typename F>
void ExpectUserError(F f, const std::string& pattern) {
  try {
    f();
    ADD_FAILURE() << "no UserError; expected one matching " << pattern;
  } catch (const UserError& e) {
    EXPECT_TRUE(std::regex_search(e.what(), std::regex(pattern)))
        << "message: " << e.what() << "\npattern: " << pattern;
  }
}

}  // namespace caffe

#endif  // CAFFE_TEST_TEST_USER_ERROR_HPP_
