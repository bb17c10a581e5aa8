// Validates a dataset written by tools/longtail_data/generate.py with the C++ reader: the
// LVIS bookkeeping (image_count, instance_count, frequency), the frequency groups, the val
// coverage and the federated lists. The directory comes from LOGN_LONGTAIL_DATA_DIR (ctest
// generates the tiny scale into the build tree first; point it at a full run to check that).

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/eval/lvis_dataset.h"
#include "gtest/gtest.h"

namespace logn {
namespace {

class LongtailDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* dir = std::getenv("LOGN_LONGTAIL_DATA_DIR");
    ASSERT_NE(dir, nullptr) << "set LOGN_LONGTAIL_DATA_DIR to a generate.py output directory";
    dir_ = dir;
    absl::StatusOr<LvisDataset> train = ReadLvisDataset(dir_ + "/train.json");
    ASSERT_TRUE(train.ok()) << train.status();
    absl::StatusOr<LvisDataset> val = ReadLvisDataset(dir_ + "/val.json");
    ASSERT_TRUE(val.ok()) << val.status();
    train_ = new LvisDataset(*std::move(train));
    val_ = new LvisDataset(*std::move(val));
  }
  static void TearDownTestSuite() {
    delete train_;
    delete val_;
  }

  // Per category: images containing it, and instances.
  static void Count(const LvisDataset& d, absl::flat_hash_map<int64_t, int64_t>* images,
                    absl::flat_hash_map<int64_t, int64_t>* instances) {
    absl::flat_hash_set<std::pair<int64_t, int64_t>> pairs;
    for (const LvisAnnotation& a : d.annotations) {
      ++(*instances)[a.category_id];
      if (pairs.insert({a.image_id, a.category_id}).second) ++(*images)[a.category_id];
    }
  }

  static std::string dir_;
  static LvisDataset* train_;
  static LvisDataset* val_;
};
std::string LongtailDataTest::dir_;
LvisDataset* LongtailDataTest::train_ = nullptr;
LvisDataset* LongtailDataTest::val_ = nullptr;

TEST_F(LongtailDataTest, BothSplitsShareTheCategoryTable) {
  ASSERT_EQ(train_->categories.size(), val_->categories.size());
  for (size_t i = 0; i < train_->categories.size(); ++i) {
    const LvisCategory& t = train_->categories[i];
    const LvisCategory& v = val_->categories[i];
    EXPECT_EQ(t.id, v.id);
    EXPECT_EQ(t.name, v.name);
    EXPECT_EQ(t.frequency, v.frequency);
    EXPECT_EQ(t.image_count, v.image_count);
    EXPECT_EQ(t.instance_count, v.instance_count);
  }
  absl::flat_hash_set<int64_t> train_ids;
  for (const LvisImage& im : train_->images) train_ids.insert(im.id);
  for (const LvisImage& im : val_->images) EXPECT_FALSE(train_ids.contains(im.id)) << im.id;
}

TEST_F(LongtailDataTest, CountsAndFrequencyComeFromTheTrainSplit) {
  absl::flat_hash_map<int64_t, int64_t> images, instances;
  Count(*train_, &images, &instances);
  int groups[3] = {0, 0, 0};
  for (const LvisCategory& c : train_->categories) {
    EXPECT_EQ(c.image_count, images[c.id]) << c.name;
    EXPECT_EQ(c.instance_count, instances[c.id]) << c.name;
    EXPECT_GE(c.image_count, 1) << c.name << " never appears in train";
    EXPECT_GE(c.instance_count, c.image_count) << c.name;
    EXPECT_EQ(c.frequency, FrequencyForImageCount(c.image_count)) << c.name;
    ++groups[static_cast<int>(c.frequency)];
  }
  const int n = static_cast<int>(train_->categories.size());
  if (n >= 100) {
    // The full scale follows LVIS's shape: about a quarter rare, a third common.
    EXPECT_NEAR(groups[0], n / 4.0, n * 0.05) << "rare";
    EXPECT_NEAR(groups[1], n / 3.0, n * 0.05) << "common";
    EXPECT_GT(groups[2], 0) << "frequent";
  } else {
    // The tiny scale is too small for frequent classes (> 100 images); rare and common exist.
    EXPECT_GT(groups[0], 0) << "rare";
    EXPECT_GT(groups[1], 0) << "common";
  }
}

TEST_F(LongtailDataTest, ConfusableFamiliesMixFrequencies) {
  // Names are "<family>_<variant>"; every family with a rare member also has a more frequent one,
  // so a biased classifier has a frequent sibling to confuse the rare class with.
  absl::flat_hash_map<std::string, std::vector<Frequency>> families;
  for (const LvisCategory& c : train_->categories) {
    const size_t us = c.name.find('_');
    ASSERT_NE(us, std::string::npos) << c.name;
    families[c.name.substr(0, us)].push_back(c.frequency);
  }
  EXPECT_GE(families.size(), 2u);
  for (const auto& [family, members] : families) {
    EXPECT_GE(members.size(), 2u) << family;
    bool rare = false, other = false;
    for (Frequency f : members) (f == Frequency::kRare ? rare : other) = true;
    if (rare) EXPECT_TRUE(other) << family << " has only rare members";
  }
}

TEST_F(LongtailDataTest, EveryClassIsInAtLeastFiveValImages) {
  absl::flat_hash_map<int64_t, int64_t> images, instances;
  Count(*val_, &images, &instances);
  for (const LvisCategory& c : val_->categories) EXPECT_GE(images[c.id], 5) << c.name;
}

TEST_F(LongtailDataTest, FederatedListsAreConsistent) {
  for (const LvisDataset* d : {train_, val_}) {
    absl::flat_hash_map<int64_t, absl::flat_hash_set<int64_t>> positive;
    for (const LvisAnnotation& a : d->annotations) positive[a.image_id].insert(a.category_id);
    int64_t negatives = 0;
    for (const LvisImage& im : d->images) {
      // Negatives are verified absent; not-exhaustive categories are present (annotated).
      for (int64_t c : im.neg_category_ids) EXPECT_FALSE(positive[im.id].contains(c)) << im.id;
      for (int64_t c : im.not_exhaustive_category_ids) EXPECT_TRUE(positive[im.id].contains(c)) << im.id;
      negatives += static_cast<int64_t>(im.neg_category_ids.size());
    }
    EXPECT_GT(negatives, 0);
  }
  // Every val class has verified-negative images, so its false positives are measured.
  absl::flat_hash_map<int64_t, int64_t> negative_images;
  for (const LvisImage& im : val_->images) {
    for (int64_t c : im.neg_category_ids) ++negative_images[c];
  }
  for (const LvisCategory& c : val_->categories) EXPECT_GE(negative_images[c.id], 1) << c.name;
}

TEST_F(LongtailDataTest, ImagesExistAndBoxesLieInside) {
  for (const auto& [split, d] : {std::pair<const char*, const LvisDataset*>{"train", train_},
                                 {"val", val_}}) {
    absl::flat_hash_map<int64_t, const LvisImage*> by_id;
    for (const LvisImage& im : d->images) {
      by_id[im.id] = &im;
      ASSERT_GT(im.width, 0);
      ASSERT_GT(im.height, 0);
      const std::string path = absl::StrCat(dir_, "/", split, "/", im.file_name);
      std::ifstream f(path, std::ios::binary);
      ASSERT_TRUE(f.good()) << path;
      char magic[8] = {};
      f.read(magic, 8);
      if (absl::EndsWith(im.file_name, ".png")) {
        EXPECT_EQ(std::string(magic + 1, 3), "PNG") << path;
      } else {
        ASSERT_TRUE(absl::EndsWith(im.file_name, ".jpg")) << path;
        EXPECT_EQ(static_cast<unsigned char>(magic[0]), 0xFF) << path;
        EXPECT_EQ(static_cast<unsigned char>(magic[1]), 0xD8) << path;
      }
    }
    for (const LvisAnnotation& a : d->annotations) {
      const LvisImage& im = *by_id.at(a.image_id);
      EXPECT_GE(a.bbox.x, 0);
      EXPECT_GE(a.bbox.y, 0);
      EXPECT_LE(a.bbox.x + a.bbox.w, im.width);
      EXPECT_LE(a.bbox.y + a.bbox.h, im.height);
      EXPECT_GT(a.area, 0);
      EXPECT_LE(a.area, a.bbox.w * a.bbox.h);
    }
  }
}

}  // namespace
}  // namespace logn
