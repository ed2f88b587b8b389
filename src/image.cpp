#include "salient/image.hpp"
#include "salient/tabular.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <map>
#include <mutex>
#include <cctype>
#include <cstdlib>
#include <set>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/npy.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

int expected_channels(const ModelMetadata& meta) {
  if (meta.input_shape.size() == 3) return static_cast<int>(meta.input_shape[0]);
  if (meta.present) return meta.channel_order == "L" ? 1 : 3;
  return 0;  // unknown: take the image as it is
}

std::string channel_word(int c) { return c == 1 ? "1 channel (grayscale)" : std::to_string(c) + " channels"; }

double at_or_first(const std::vector<double>& v, size_t i, double fallback) {
  if (v.empty()) return fallback;
  return i < v.size() ? v[i] : v[0];
}

// Sends the process's stderr to /dev/null for its lifetime (decoders write warnings there).
// Silences fd 2 while decoders run (libpng/libjpeg print their own complaints; ours is the one
// line). Re-entrant across threads: the first of overlapping silencers redirects, the last
// restores, under one lock (two plain dup2 pairs interleaved would leave stderr at /dev/null).
class StderrSilencer {
 public:
  StderrSilencer() {
    std::lock_guard<std::mutex> lock(mutex());
    if (depth()++ > 0) return;
    std::fflush(stderr);
    saved() = ::dup(2);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (saved() >= 0 && devnull >= 0) ::dup2(devnull, 2);
    if (devnull >= 0) ::close(devnull);
  }
  ~StderrSilencer() {
    std::lock_guard<std::mutex> lock(mutex());
    if (--depth() > 0) return;
    std::fflush(stderr);
    if (saved() >= 0) {
      ::dup2(saved(), 2);
      ::close(saved());
      saved() = -1;
    }
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& depth() {
    static int d = 0;
    return d;
  }
  static int& saved() {
    static int fd = -1;
    return fd;
  }
};

uint32_t be32(const std::string& b, size_t i) {
  return (uint32_t(uint8_t(b[i])) << 24) | (uint32_t(uint8_t(b[i + 1])) << 16) | (uint32_t(uint8_t(b[i + 2])) << 8) | uint8_t(b[i + 3]);
}
uint32_t le32(const std::string& b, size_t i) {
  return uint32_t(uint8_t(b[i])) | (uint32_t(uint8_t(b[i + 1])) << 8) | (uint32_t(uint8_t(b[i + 2])) << 16) | (uint32_t(uint8_t(b[i + 3])) << 24);
}
uint32_t be16(const std::string& b, size_t i) { return (uint32_t(uint8_t(b[i])) << 8) | uint8_t(b[i + 1]); }
uint32_t le16(const std::string& b, size_t i) { return uint32_t(uint8_t(b[i])) | (uint32_t(uint8_t(b[i + 1])) << 8); }
bool starts(const std::string& b, const char* magic, size_t n) { return b.size() >= n && b.compare(0, n, magic, n) == 0; }

struct Dimensions {
  std::string format;
  int64_t width = -1, height = -1;  // -1: the header is cut short or malformed
};

// An image's format and size from its header alone, before a pixel is decoded (a decompression
// bomb declares its size there). Empty format: not one Salient reads.
Dimensions read_dimensions(const std::string& b) {
  Dimensions d;
  if (starts(b, "\x89PNG\r\n\x1a\n", 8)) {
    d.format = "PNG";
    if (b.size() >= 24) d.width = be32(b, 16), d.height = be32(b, 20);
  } else if (starts(b, "\xFF\xD8", 2)) {
    d.format = "JPEG";
    for (size_t i = 2; i + 9 < b.size();) {
      if (uint8_t(b[i]) != 0xFF) break;
      const uint8_t marker = uint8_t(b[i + 1]);
      if (marker == 0xFF) { ++i; continue; }
      if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD9)) { i += 2; continue; }
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
        d.height = be16(b, i + 5), d.width = be16(b, i + 7);
        break;
      }
      i += 2 + be16(b, i + 2);
    }
  } else if (starts(b, "BM", 2)) {
    d.format = "BMP";
    if (b.size() >= 26) d.width = static_cast<int32_t>(le32(b, 18)), d.height = std::abs(static_cast<int64_t>(static_cast<int32_t>(le32(b, 22))));
  } else if (starts(b, "RIFF", 4) && b.size() >= 30 && b.compare(8, 4, "WEBP") == 0) {
    d.format = "WebP";
    if (b.compare(12, 4, "VP8 ") == 0) d.width = le16(b, 26) & 0x3fff, d.height = le16(b, 28) & 0x3fff;
    else if (b.compare(12, 4, "VP8L") == 0) d.width = 1 + (le32(b, 21) & 0x3fff), d.height = 1 + ((le32(b, 21) >> 14) & 0x3fff);
    else if (b.compare(12, 4, "VP8X") == 0) d.width = 1 + (le32(b, 24) & 0xffffff), d.height = 1 + (le32(b, 27) & 0xffffff);
  } else if (starts(b, "II*\0", 4) || starts(b, "MM\0*", 4)) {
    d.format = "TIFF";
    const bool le = b[0] == 'I';
    auto u16 = [&](size_t i) { return le ? le16(b, i) : be16(b, i); };
    auto u32 = [&](size_t i) { return le ? le32(b, i) : be32(b, i); };
    const size_t ifd = b.size() >= 8 ? u32(4) : 0;
    if (ifd > 0 && ifd + 2 <= b.size()) {
      const size_t n = u16(ifd);
      for (size_t k = 0; k < n && ifd + 2 + 12 * (k + 1) <= b.size(); ++k) {
        const size_t e = ifd + 2 + 12 * k;
        const uint32_t tag = u16(e), type = u16(e + 2), value = type == 3 ? u16(e + 8) : u32(e + 8);
        if (tag == 256) d.width = value;
        if (tag == 257) d.height = value;
      }
    }
  } else if (b.size() >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') {
    d.format = "PNM";
    std::vector<int64_t> v;  // width, height after the magic, skipping whitespace and # comments
    for (size_t i = 2; i < b.size() && i < 4096 && v.size() < 2;) {
      if (b[i] == '#') {
        while (i < b.size() && b[i] != '\n') ++i;
      } else if (std::isdigit(uint8_t(b[i]))) {
        int64_t x = 0;
        for (; i < b.size() && std::isdigit(uint8_t(b[i])) && x < (int64_t{1} << 40); ++i) x = x * 10 + (b[i] - '0');
        v.push_back(x);
      } else {
        ++i;
      }
    }
    if (v.size() == 2) d.width = v[0], d.height = v[1];
  }
  return d;
}

int64_t g_max_pixels = kDefaultMaxPixels;

}  // namespace

void set_max_image_pixels(int64_t pixels) {
  if (pixels < 1) throw Error("--max-pixels must be >= 1");
  g_max_pixels = pixels;
}
int64_t max_image_pixels() { return g_max_pixels; }

Resize parse_resize(const std::string& text) {
  if (text.empty() || text == "stretch") return Resize::Stretch;
  if (text == "crop") return Resize::Crop;
  if (text == "none") return Resize::None;
  throw Error("--resize must be stretch or crop, got '" + text + "'");
}

void check_finite(const torch::Tensor& t, const std::string& what) {
  if (!t.is_floating_point()) return;
  const int64_t bad = (~torch::isfinite(t)).sum().item<int64_t>();
  if (bad > 0)
    throw Error(what + " has " + std::to_string(bad) + " non-finite value" + (bad > 1 ? "s" : "") + " (NaN or Inf) of " +
                std::to_string(t.numel()));
}

bool is_image_path(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  static const std::set<std::string> known = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"};
  return known.count(ext) > 0;
}

std::vector<std::string> image_files_in(const std::string& folder) {
  check_file_access(folder);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(folder))
    if (e.is_regular_file() && is_image_path(e.path().string())) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error("folder '" + folder + "' holds no image (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM)");
  return files;
}

ImageHeader image_header(const std::string& bytes) {
  const Dimensions d = read_dimensions(bytes);
  return {d.format, d.width, d.height};
}

InputItem load_image(const std::string& path, const ModelMetadata& meta, Resize resize) {
  return decode_image(read_file(path), path, meta, resize);
}

InputItem decode_image(const std::string& bytes, const std::string& path, const ModelMetadata& meta, Resize resize) {
  const Dimensions dims = read_dimensions(bytes);
  if (dims.format.empty())
    throw Error("'" + path + "' is not an image Salient reads (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM)");
  if (dims.width <= 0 || dims.height <= 0)
    throw Error("cannot decode image '" + path + "' (its " + dims.format + " header is corrupt or truncated)");
  if (dims.width * dims.height > g_max_pixels)
    throw Error("image '" + path + "' declares " + std::to_string(dims.width) + "x" + std::to_string(dims.height) +
                " pixels, more than the cap of " + std::to_string(g_max_pixels) + " (--max-pixels)");
  if (dims.format == "JPEG") {
    // libjpeg decodes a truncated file with a grey tail and only a warning: a JPEG must end with
    // its end-of-image marker (trailing zero padding aside).
    size_t end = bytes.size();
    while (end > 2 && bytes[end - 1] == '\0') --end;
    if (end < 4 || uint8_t(bytes[end - 2]) != 0xFF || uint8_t(bytes[end - 1]) != 0xD9)
      throw Error("cannot decode image '" + path + "' (a truncated JPEG: no end-of-image marker)");
  }
  cv::Mat raw;
  StderrSilencer quiet;  // libpng/libjpeg print their own complaints; ours is the one line
  try {
    raw = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())),
                       cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    raw = cv::Mat();
  }
  if (raw.empty()) throw Error("cannot decode image '" + path + "' (corrupt, truncated or not an image)");
  if (raw.depth() != CV_8U && raw.depth() != CV_16U)
    throw Error("image '" + path + "' has an unsupported pixel depth (8- or 16-bit expected)");
  const double full = raw.depth() == CV_16U ? 65535.0 : 255.0;
  int want_c = expected_channels(meta);
  int got_c = raw.channels() == 4 ? 3 : raw.channels();  // alpha is dropped
  if (raw.channels() == 4) cv::cvtColor(raw, raw, cv::COLOR_BGRA2BGR);
  if (raw.channels() == 2) throw Error("image '" + path + "' has 2 channels (gray + alpha); expected 1 or 3");
  if (want_c != 0 && want_c != got_c)
    throw Error("image '" + path + "' has " + channel_word(got_c) + ", the model expects " + channel_word(want_c));
  if (meta.input_shape.size() == 3) {
    const int h = static_cast<int>(meta.input_shape[1]), w = static_cast<int>(meta.input_shape[2]);
    if (raw.rows != h || raw.cols != w) {
      if (resize == Resize::None)
        throw Error("image '" + path + "' is " + std::to_string(raw.cols) + "x" + std::to_string(raw.rows) +
                    " (WxH), the model expects " + std::to_string(w) + "x" + std::to_string(h) +
                    " (or pass --resize, or --resize crop)");
      if (h <= 0 || w <= 0) throw Error("the metadata's input_shape must be positive to resize to it");
      if (resize == Resize::Stretch) {
        cv::resize(raw, raw, cv::Size(w, h), 0, 0, cv::INTER_AREA);
      } else {
        const double side = std::round(std::max(h, w) / 0.875);
        const double scale = side / std::min(raw.rows, raw.cols);
        const int rh = std::max(h, static_cast<int>(std::lround(raw.rows * scale)));
        const int rw = std::max(w, static_cast<int>(std::lround(raw.cols * scale)));
        cv::resize(raw, raw, cv::Size(rw, rh), 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
        raw = raw(cv::Rect((rw - w) / 2, (rh - h) / 2, w, h)).clone();
      }
    }
  }
  InputItem item;
  item.source = path;
  item.stem = fs::path(path).stem().string();
  cv::Mat bgr8;
  raw.convertTo(bgr8, CV_8U, 255.0 / full);
  if (bgr8.channels() == 1) cv::cvtColor(bgr8, bgr8, cv::COLOR_GRAY2BGR);
  item.display = bgr8;

  cv::Mat pix = raw;
  if (pix.channels() == 3 && meta.channel_order != "BGR") cv::cvtColor(pix, pix, cv::COLOR_BGR2RGB);
  cv::Mat f;
  pix.convertTo(f, CV_32F, 1.0 / full);
  torch::Tensor t = torch::from_blob(f.data, {f.rows, f.cols, f.channels()}, torch::kFloat).permute({2, 0, 1}).clone();
  t = t * (meta.range_hi - meta.range_lo) + meta.range_lo;
  for (int64_t c = 0; c < t.size(0); ++c) {
    const double m = at_or_first(meta.mean, c, 0.0), s = at_or_first(meta.std, c, 1.0);
    t[c] = (t[c] - m) / s;
  }
  check_finite(t, "image '" + path + "' after preprocessing");
  item.tensor = t;
  return item;
}

cv::Mat tensor_to_display(const torch::Tensor& tensor, const ModelMetadata& meta) {
  torch::Tensor t = tensor.detach().to(torch::kCPU, torch::kFloat).clone();
  if (t.dim() == 2) t = t.unsqueeze(0);
  if (meta.present) {
    for (int64_t c = 0; c < t.size(0); ++c)
      t[c] = t[c] * at_or_first(meta.std, c, 1.0) + at_or_first(meta.mean, c, 0.0);
    t = (t - meta.range_lo) / (meta.range_hi - meta.range_lo);
  } else {
    t = (t - t.min()) / (t.max() - t.min()).clamp_min(1e-12);
  }
  t = (t.clamp(0, 1) * 255).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  const int c = static_cast<int>(t.size(2));
  cv::Mat m(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC(c), t.data_ptr());
  cv::Mat out;
  if (c == 1) cv::cvtColor(m, out, cv::COLOR_GRAY2BGR);
  else if (meta.channel_order == "BGR") out = m.clone();
  else cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  return out;
}

std::vector<InputItem> load_paired_inputs(const std::vector<std::string>& paths, size_t count,
                                          std::vector<std::vector<int64_t>>& shapes, std::vector<torch::ScalarType>* dtypes) {
  if (paths.size() != count)
    throw Error("the model takes " + std::to_string(count) + " inputs: give one --input .npy per input (got " +
                std::to_string(paths.size()) + ")");
  std::vector<torch::Tensor> stacks;
  shapes.clear();
  if (dtypes) dtypes->clear();
  for (const auto& p : paths) {
    if (fs::path(p).extension() != ".npy")
      throw Error("'" + p + "': a model of several inputs takes one .npy stack [N, ...] per input");
    const torch::Tensor raw = read_npy_any(p);
    if (dtypes) dtypes->push_back(raw.scalar_type() == torch::kBool ? torch::kFloat : raw.scalar_type());
    torch::Tensor s = raw.to(torch::kFloat);
    if (s.dim() < 2 || s.size(0) < 1) throw Error("'" + p + "' must hold a stack [N, ...] of at least one input");
    if (!stacks.empty() && s.size(0) != stacks[0].size(0))
      throw Error("'" + p + "' holds " + std::to_string(s.size(0)) + " rows, '" + paths[0] + "' " +
                  std::to_string(stacks[0].size(0)) + ": paired inputs need the same number of rows");
    check_finite(s, "'" + p + "'");
    shapes.push_back(s.sizes().slice(1).vec());
    stacks.push_back(s.reshape({s.size(0), -1}));
  }
  const torch::Tensor packed = torch::cat(stacks, 1);
  const torch::Tensor raw_one = stacks[0].reshape([&] {
    std::vector<int64_t> s{stacks[0].size(0)};
    s.insert(s.end(), shapes[0].begin(), shapes[0].end());
    return s;
  }());
  std::vector<InputItem> items;
  for (int64_t i = 0; i < packed.size(0); ++i) {
    InputItem item;
    item.source = paths[0];
    for (size_t k = 1; k < paths.size(); ++k) item.source += "," + paths[k];
    item.stem = fs::path(paths[0]).stem().string() + "_" + std::to_string(i);
    item.tensor = stacks.size() == 1 ? raw_one[i].clone() : packed[i].clone();  // one input keeps its shape
    items.push_back(std::move(item));
  }
  assign_unique_stems(items);
  return items;
}

std::vector<std::string> unique_stems(std::vector<std::string> stems) {
  // A stem names a folder under --out: no separators, no control characters, never "." or "..",
  // at most 200 bytes.
  auto clean = [](std::string s) {
    for (auto& c : s)
      if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '_';
    if (s.size() > 200) s.resize(200);
    if (s.empty() || s.find_first_not_of('.') == std::string::npos) s = "_" + s;
    return s;
  };
  std::set<std::string> taken;
  for (auto& stem : stems) taken.insert(stem = clean(stem));
  // Repeated stems get "-2", "-3"...: the first number whose name no input has and none was given
  // (so a.png twice beside a-2.png gives a, a-2 (the file) and a-3). Deterministic in input order.
  std::set<std::string> assigned;
  for (auto& stem : stems) {
    if (assigned.insert(stem).second) continue;
    for (int k = 2;; ++k) {
      const std::string name = stem + "-" + std::to_string(k);
      if (!taken.count(name) && !assigned.count(name)) {
        stem = name;
        assigned.insert(name);
        break;
      }
    }
  }
  return stems;
}

void assign_unique_stems(std::vector<InputItem>& items) {
  std::vector<std::string> stems;
  for (const auto& item : items) stems.push_back(item.stem);
  stems = unique_stems(std::move(stems));
  for (size_t i = 0; i < items.size(); ++i) items[i].stem = std::move(stems[i]);
}

std::vector<InputItem> load_inputs(const std::vector<std::string>& given, const ModelMetadata& meta, Resize resize) {
  std::vector<InputItem> items;
  std::vector<std::string> paths;
  for (const auto& p : given) {
    std::error_code ec;
    if (fs::is_directory(p, ec))
      for (auto& f : image_files_in(p)) paths.push_back(std::move(f));
    else
      paths.push_back(p);
  }
  for (const auto& p : paths) {
    std::string ext = fs::path(p).extension().string();
    for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (ext == ".csv") {  // tabular rows, encoded as the metadata's features say
      for (auto& item : read_csv_rows(p, meta).items) items.push_back(std::move(item));
      continue;
    }
    if (ext == ".npy") {
      torch::Tensor stack = read_npy(p);
      if (stack.dim() < 2 || stack.size(0) < 1)
        throw Error("'" + p + "' must hold a stack [N, ...] of at least one input; got " + std::to_string(stack.dim()) + " dimension(s)");
      if (!meta.input_shape.empty() && stack.sizes().slice(1) != c10::IntArrayRef(meta.input_shape)) {
        std::string want, got;
        for (auto d : meta.input_shape) want += (want.empty() ? "" : ",") + std::to_string(d);
        for (auto d : stack.sizes().slice(1)) got += (got.empty() ? "" : ",") + std::to_string(d);
        throw Error("'" + p + "' holds inputs of shape [" + got + "], the model expects [" + want + "]");
      }
      for (int64_t i = 0; i < stack.size(0); ++i) {
        InputItem item;
        item.source = p;
        item.stem = fs::path(p).stem().string() + "_" + std::to_string(i);
        item.tensor = stack[i].clone();
        check_finite(item.tensor, "'" + p + "' row " + std::to_string(i));
        if (is_image_like(item.tensor)) item.display = tensor_to_display(item.tensor, meta);
        items.push_back(std::move(item));
      }
    } else {
      items.push_back(load_image(p, meta, resize));
    }
  }
  assign_unique_stems(items);
  return items;
}

Reduce parse_reduce(const std::string& s) {
  if (s == "abs-sum") return Reduce::AbsSum;
  if (s == "sum") return Reduce::Sum;
  if (s == "max-abs") return Reduce::MaxAbs;
  throw Error("unknown channel reduction '" + s + "' (expected abs-sum, sum or max-abs)");
}

bool is_image_like(const torch::Tensor& map) {
  if (map.dim() == 2) return map.size(0) > 1 && map.size(1) > 1;
  return map.dim() == 3 && (map.size(0) == 1 || map.size(0) == 3 || map.size(0) == 4) && map.size(1) > 1 && map.size(2) > 1;
}

cv::Mat normalise_map(const torch::Tensor& map, const RenderOptions& options) {
  torch::Tensor m = map.detach().to(torch::kCPU, torch::kFloat);
  if (m.dim() == 2) m = m.unsqueeze(0);
  torch::Tensor plane;
  switch (options.reduce) {
    case Reduce::AbsSum: plane = m.abs().sum(0); break;
    case Reduce::Sum: plane = m.sum(0); break;
    case Reduce::MaxAbs: plane = std::get<0>(m.abs().max(0)); break;
  }
  // Scale by a high percentile of |value| so that a few outliers do not wash the map out.
  torch::Tensor flat = plane.abs().flatten();
  double q = options.clip_percentile >= 100 ? flat.max().item<double>()
                                            : flat.quantile(options.clip_percentile / 100.0).item<double>();
  if (!(q > 0)) q = flat.max().item<double>();
  if (!(q > 0)) q = 1.0;
  const double lo = options.reduce == Reduce::Sum ? -1.0 : 0.0;
  plane = (plane / q).clamp(lo, 1.0).contiguous();
  return cv::Mat(static_cast<int>(plane.size(0)), static_cast<int>(plane.size(1)), CV_32F, plane.data_ptr()).clone();
}

namespace {

const std::map<std::string, int>& cv_colormaps() {
  static const std::map<std::string, int> m{
      {"inferno", cv::COLORMAP_INFERNO}, {"viridis", cv::COLORMAP_VIRIDIS}, {"magma", cv::COLORMAP_MAGMA},
      {"plasma", cv::COLORMAP_PLASMA},   {"jet", cv::COLORMAP_JET},         {"turbo", cv::COLORMAP_TURBO},
      {"hot", cv::COLORMAP_HOT}};
  return m;
}

// Diverging blue-white-red for signed maps: 0 -> blue, 127 -> white, 255 -> red (BGR).
cv::Mat bwr_lut() {
  cv::Mat lut(1, 256, CV_8UC3);
  for (int i = 0; i < 256; ++i) {
    double t = i / 255.0 * 2 - 1;  // [-1, 1]
    double r = t < 0 ? 1 + t : 1, b = t > 0 ? 1 - t : 1, g = 1 - std::abs(t);
    lut.at<cv::Vec3b>(0, i) = cv::Vec3b(static_cast<uchar>(b * 255), static_cast<uchar>(g * 255), static_cast<uchar>(r * 255));
  }
  return lut;
}

int upscale_factor(int rows, int cols, int min_size) {
  int longest = std::max(rows, cols);
  return longest >= min_size ? 1 : (min_size + longest - 1) / longest;
}

}  // namespace

std::vector<std::string> colormap_names() {
  std::vector<std::string> names;
  for (const auto& kv : cv_colormaps()) names.push_back(kv.first);
  names.push_back("bwr");
  return names;
}

cv::Mat render_heatmap(const torch::Tensor& map, const cv::Mat& picture, const RenderOptions& options) {
  const bool known = options.colormap == "bwr" || cv_colormaps().count(options.colormap);
  if (!known) {
    std::string list;
    for (const auto& n : colormap_names()) list += (list.empty() ? "" : ", ") + n;
    throw Error("unknown colormap '" + options.colormap + "' (expected one of " + list + ")");
  }
  cv::Mat plane = normalise_map(map, options);  // [0,1] or [-1,1]
  const bool signed_map = options.reduce == Reduce::Sum;
  cv::Mat u8;
  if (signed_map || options.colormap == "bwr") {
    cv::Mat shifted = signed_map ? (plane + 1.0) * 127.5 : plane * 127.5 + 127.5;
    shifted.convertTo(u8, CV_8U);
  } else {
    plane.convertTo(u8, CV_8U, 255.0);
  }
  cv::Mat heat;
  if (options.colormap == "bwr" || signed_map && options.colormap == "inferno") {
    cv::Mat u8c;
    cv::cvtColor(u8, u8c, cv::COLOR_GRAY2BGR);
    cv::LUT(u8c, bwr_lut(), heat);
  } else {
    cv::applyColorMap(u8, heat, cv_colormaps().at(options.colormap));
  }
  const int f = upscale_factor(heat.rows, heat.cols, options.min_size);
  cv::Mat big_heat, weight;
  cv::resize(heat, big_heat, cv::Size(), f, f, cv::INTER_NEAREST);
  if (picture.empty()) return big_heat;
  cv::Mat pic;
  if (picture.rows != heat.rows || picture.cols != heat.cols) cv::resize(picture, pic, heat.size(), 0, 0, cv::INTER_AREA);
  else pic = picture;
  cv::resize(pic, pic, cv::Size(), f, f, cv::INTER_NEAREST);
  // Faded grayscale picture underneath; the heat shows through in proportion to its strength.
  cv::Mat gray;
  cv::cvtColor(pic, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(gray, gray, cv::COLOR_GRAY2BGR);
  cv::Mat mag = cv::abs(plane);
  cv::sqrt(mag, mag);
  cv::resize(mag, weight, cv::Size(), f, f, cv::INTER_NEAREST);
  cv::Mat out(big_heat.size(), CV_8UC3);
  for (int y = 0; y < out.rows; ++y)
    for (int x = 0; x < out.cols; ++x) {
      const double a = std::min(1.0, options.alpha + (1 - options.alpha) * weight.at<float>(y, x)) *
                       std::min(1.0, 0.35 + weight.at<float>(y, x));
      const auto& h = big_heat.at<cv::Vec3b>(y, x);
      const auto& g = gray.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) out.at<cv::Vec3b>(y, x)[c] = cv::saturate_cast<uchar>(a * h[c] + (1 - a) * 0.6 * g[c]);
    }
  return out;
}

cv::Mat upscale_for_display(const cv::Mat& picture, int min_size) {
  const int f = upscale_factor(picture.rows, picture.cols, min_size);
  cv::Mat out;
  cv::resize(picture, out, cv::Size(), f, f, cv::INTER_NEAREST);
  return out;
}

cv::Mat make_grid(const std::vector<cv::Mat>& panels, const std::vector<std::string>& captions,
                  const std::string& title) {
  const int pad = 8, cap_h = 22, title_h = title.empty() ? 0 : 28;
  int ph = 0, pw = 0;
  for (const auto& p : panels) {
    ph = std::max(ph, p.rows);
    pw = std::max(pw, p.cols);
  }
  const int n = static_cast<int>(panels.size());
  // Rows of at most kGridColumns panels (19 methods made one 4,648-px row).
  constexpr int kGridColumns = 6;
  const int cols = std::max(1, std::min(n, kGridColumns)), rows = std::max(1, (n + cols - 1) / cols);
  const int row_h = cap_h + ph + pad;
  cv::Mat grid(title_h + rows * row_h + pad, cols * (pw + pad) + pad, CV_8UC3, cv::Scalar(255, 255, 255));
  if (!title.empty())
    cv::putText(grid, title, cv::Point(pad, 20), cv::FONT_HERSHEY_SIMPLEX, 0.55, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  for (int i = 0; i < n; ++i) {
    const int x = pad + (i % cols) * (pw + pad), y = title_h + (i / cols) * row_h + cap_h + pad;
    panels[i].copyTo(grid(cv::Rect(x, y, panels[i].cols, panels[i].rows)));
    std::string cap = i < static_cast<int>(captions.size()) ? captions[i] : "";
    double scale = 0.5;
    int base = 0;
    while (scale > 0.3 && cv::getTextSize(cap, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &base).width > pw) scale -= 0.05;
    cv::putText(grid, cap, cv::Point(x, y - 6), cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(40, 40, 40), 1, cv::LINE_AA);
  }
  return grid;
}

cv::Mat plot_lines(const std::string& title, const std::string& xlabel, const std::vector<PlotSeries>& series) {
  const int width = 760, height = 460, left = 70, right = 200, top = 40, bottom = 60;
  cv::Mat img(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (size_t i = 0; i < s.xs.size(); ++i) {
      x0 = std::min(x0, s.xs[i]);
      x1 = std::max(x1, s.xs[i]);
      y0 = std::min(y0, s.ys[i]);
      y1 = std::max(y1, s.ys[i]);
    }
  if (!(x1 > x0)) x1 = x0 + 1;
  if (y0 > 0 && y0 < 0.3 * y1) y0 = 0;  // start at 0 when it is close
  if (!(y1 > y0)) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad;
  y1 += pad;
  const int pw = width - left - right, ph = height - top - bottom;
  auto px = [&](double x) { return left + static_cast<int>(std::lround((x - x0) / (x1 - x0) * pw)); };
  auto py = [&](double y) { return top + ph - static_cast<int>(std::lround((y - y0) / (y1 - y0) * ph)); };
  const cv::Scalar ink(40, 40, 40), grid(225, 225, 225);
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  // x ticks: at whole numbers when every x is one (a count of layers never reads 3.4), else sixths.
  bool whole = true;
  for (const auto& s : series)
    for (double x : s.xs) whole = whole && x == std::round(x);
  std::vector<double> xticks;
  if (whole) {
    const double step = std::max(1.0, std::ceil((x1 - x0) / 6.0));
    for (double xv = std::ceil(x0); xv <= x1 + 1e-9; xv += step) xticks.push_back(xv);
  } else {
    for (int k = 0; k <= 5; ++k) xticks.push_back(x0 + (x1 - x0) * k / 5);
  }
  char buf[32];
  for (int k = 0; k <= 5; ++k) {
    const double yv = y0 + (y1 - y0) * k / 5;
    cv::line(img, {left, py(yv)}, {left + pw, py(yv)}, grid, 1);
    std::snprintf(buf, sizeof(buf), "%.3g", yv);
    cv::putText(img, buf, {5, py(yv) + 4}, font, 0.4, ink, 1, cv::LINE_AA);
  }
  for (double xv : xticks) {
    cv::line(img, {px(xv), top}, {px(xv), top + ph}, grid, 1);
    std::snprintf(buf, sizeof(buf), "%.3g", xv);
    cv::putText(img, buf, {px(xv) - 12, top + ph + 18}, font, 0.4, ink, 1, cv::LINE_AA);
  }
  cv::rectangle(img, {left, top}, {left + pw, top + ph}, ink, 1);
  cv::putText(img, title, {left, 24}, font, 0.5, ink, 1, cv::LINE_AA);
  cv::putText(img, xlabel, {left + pw / 2 - 60, height - 18}, font, 0.45, ink, 1, cv::LINE_AA);
  static const cv::Scalar palette[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44}, {40, 39, 214}, {189, 103, 148},
                                       {75, 86, 140},  {194, 119, 227}, {34, 189, 188}, {207, 190, 23}, {127, 127, 127}};
  for (size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = series[k].name == "random order" ? cv::Scalar(127, 127, 127) : palette[k % 10];
    for (size_t i = 1; i < series[k].xs.size(); ++i)
      cv::line(img, {px(series[k].xs[i - 1]), py(series[k].ys[i - 1])}, {px(series[k].xs[i]), py(series[k].ys[i])}, colour, 2,
               cv::LINE_AA);
    const int ly = top + 14 + 20 * static_cast<int>(k);
    cv::line(img, {left + pw + 12, ly - 4}, {left + pw + 36, ly - 4}, colour, 2, cv::LINE_AA);
    cv::putText(img, series[k].name, {left + pw + 42, ly}, font, 0.42, ink, 1, cv::LINE_AA);
  }
  return img;
}

std::string encode_png(const cv::Mat& image) {
  std::vector<uchar> buf;
  if (image.empty() || !cv::imencode(".png", image, buf)) throw Error("cannot encode a PNG", ErrorKind::Internal);
  return std::string(buf.begin(), buf.end());
}

void write_png(const std::string& path, const cv::Mat& image) { write_file_atomic(path, encode_png(image)); }

}  // namespace salient
