#pragma once
// Image conveniences: decoding and preprocessing per the metadata, colormaps, overlays, grids.
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/script.h>

#include "salient/metadata.hpp"

namespace salient {

// One input as the model sees it, plus what rendering needs.
struct InputItem {
  std::string stem;     // output folder name
  std::string source;   // the file it came from
  torch::Tensor tensor; // one input, without batch dimension, float32
  cv::Mat display;      // 8-bit BGR picture of the input (empty for .npy inputs that are not images)
};

// How an image of another size than the model's input is brought to it.
enum class Resize {
  None,     // refused: an error naming both sizes
  Stretch,  // resized to exactly H x W (aspect ratio not kept)
  Crop      // torchvision's eval transform: the short side resized to max(H, W) / 0.875 (256 for
            // 224), then the centre H x W cropped
};
Resize parse_resize(const std::string& text);  // "" or "stretch", "crop", "none"

// Images are refused before decoding when their header declares more pixels than this (a
// decompression bomb: an 830-byte JPEG can declare 30000x30000). Default 50 megapixels.
constexpr int64_t kDefaultMaxPixels = 50'000'000;
void set_max_image_pixels(int64_t pixels);
int64_t max_image_pixels();

// Decodes an image file and preprocesses it per `meta` (channel order, value range, mean/std,
// input shape). A size or channel mismatch is an error naming expected vs got, unless `resize`.
InputItem load_image(const std::string& path, const ModelMetadata& meta, Resize resize = Resize::None);
// The same from the file's bytes (an upload): `name` stands for the file in messages and the stem.
InputItem decode_image(const std::string& bytes, const std::string& name, const ModelMetadata& meta,
                       Resize resize = Resize::None);
// An image's format and size from its header alone (format empty: not an image Salient reads;
// width/height -1: a header cut short). What a server checks against its pixel cap before decoding.
struct ImageHeader {
  std::string format;
  int64_t width = -1, height = -1;
};
ImageHeader image_header(const std::string& bytes);
// Loads image files, folders of images (sorted by name) and .npy stacks (each of a stack's N rows
// becomes one input `stem_i`). An input with a non-finite value (NaN/Inf) is an error naming it.
std::vector<InputItem> load_inputs(const std::vector<std::string>& paths, const ModelMetadata& meta,
                                   Resize resize = Resize::None);
// Inputs of a model of `count` tensor inputs (forward arguments, or a dict's entries): one .npy
// stack [N, ...] per input, in order, their rows paired (same N); each item's tensor is its rows
// flattened and concatenated (see Model::set_input_shapes), or, of one input, its row as it is. `shapes` receives each input's shape without the batch dimension.
// `dtypes` (optional) receives each file's own type (an int64 id input stays int64 for the model).
std::vector<InputItem> load_paired_inputs(const std::vector<std::string>& paths, size_t count,
                                          std::vector<std::vector<int64_t>>& shapes,
                                          std::vector<torch::ScalarType>* dtypes = nullptr);
// Makes every item's stem a safe, unique folder name under --out: separators and control
// characters become '_', "." and ".." get a '_' prefix, repeats get the first free "-K" suffix that
// no other input's stem has (deterministic in input order).
void assign_unique_stems(std::vector<InputItem>& items);
std::vector<std::string> unique_stems(std::vector<std::string> stems);  // the same rule on names
// Whether a file name has an image extension Salient reads (case-insensitive).
bool is_image_path(const std::string& path);
// The image files of a folder, sorted by name (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM).
std::vector<std::string> image_files_in(const std::string& folder);
// Throws salient::Error naming `what` when `t` holds a NaN or an infinity.
void check_finite(const torch::Tensor& t, const std::string& what);
// The inverse of preprocessing, for display: tensor [C,H,W] -> 8-bit BGR picture.
cv::Mat tensor_to_display(const torch::Tensor& tensor, const ModelMetadata& meta);

enum class Reduce { AbsSum, Sum, MaxAbs };  // how channels of a map become one plane
Reduce parse_reduce(const std::string&);

struct RenderOptions {
  std::string colormap = "inferno";  // inferno, viridis, magma, plasma, jet, turbo, hot, bwr
  Reduce reduce = Reduce::AbsSum;
  double clip_percentile = 99.0;     // values above this percentile saturate (outliers)
  double alpha = 0.55;               // heatmap opacity over the picture
  int min_size = 224;                // small inputs are upscaled (nearest) to at least this size
};

bool is_image_like(const torch::Tensor& map);  // [C,H,W] with C in {1,3,4}, or [H,W]
// A map [C,H,W] or [H,W] -> plane [H,W] in [0,1] (or [-1,1] for signed reduce), outliers clipped.
cv::Mat normalise_map(const torch::Tensor& map, const RenderOptions& options);
// Heatmap over `picture` (or alone when picture is empty), BGR 8-bit.
cv::Mat render_heatmap(const torch::Tensor& map, const cv::Mat& picture, const RenderOptions& options);
// Nearest-neighbour upscale so that the longer side is at least min_size (pixels stay pixels).
cv::Mat upscale_for_display(const cv::Mat& picture, int min_size);
// Panels side by side, each with a caption above it.
cv::Mat make_grid(const std::vector<cv::Mat>& panels, const std::vector<std::string>& captions,
                  const std::string& title);
std::vector<std::string> colormap_names();

// A line chart (white background, axes with ticks, one coloured line per series, a legend).
struct PlotSeries {
  std::string name;
  std::vector<double> xs, ys;
};
cv::Mat plot_lines(const std::string& title, const std::string& xlabel, const std::vector<PlotSeries>& series);
std::string encode_png(const cv::Mat& image);                    // PNG bytes (a server's sink)
void write_png(const std::string& path, const cv::Mat& image);  // atomic

}  // namespace salient
