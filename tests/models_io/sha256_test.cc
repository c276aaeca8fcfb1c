// The library's SHA-256 against the FIPS 180-2 example vectors.
#include "internal/sha256.h"

#include <string>

#include "gtest/gtest.h"

namespace qsig::models::io::internal {
namespace {

TEST(IoSha256, FipsVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(IoSha256, IncrementalEqualsOneShot) {
  const std::string s(1000, 'x');
  for (size_t cut : {0, 1, 55, 56, 63, 64, 65, 999}) {
    SCOPED_TRACE(cut);
    Sha256 h;
    h.Update(s.substr(0, cut));
    h.Update(s.substr(cut));
    const auto d = h.Final();
    EXPECT_EQ(ToHex(d.data(), d.size()), Sha256Hex(s));
  }
}

}  // namespace
}  // namespace qsig::models::io::internal
