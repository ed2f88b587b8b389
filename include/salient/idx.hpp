#pragma once
// IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed.
#include <string>

#include <torch/script.h>

namespace salient {

// The array in an IDX file as uint8 (images [N,H,W], labels [N]); throws salient::Error.
torch::Tensor read_idx(const std::string& path);

}  // namespace salient
