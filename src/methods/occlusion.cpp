// Occlusion (Zeiler & Fergus 2014): slide a window of baseline values over the input; each element's
// attribution is the mean output drop over the windows that cover it.
#include "salient/error.hpp"
#include "salient/json.hpp"
#include "salient/gradients.hpp"
#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

struct OcclusionOptions : BlackBoxCommon {
  std::vector<int64_t> window;  // window shape (trailing dims; empty = auto)
  std::vector<int64_t> stride;  // strides (empty = half the window)
};

// Whole numbers >= 1: [4, 4], "4x4", "4,4", 4; "auto" is the empty list.
std::vector<int64_t> int_list(const nlohmann::json& v, const OptionContext& c, const std::string& name) {
  std::vector<int64_t> out;
  auto take = [&](const nlohmann::json& e) {
    if (!e.is_number_integer() || e.get<int64_t>() < 1) throw Error(c.method + ": option '" + name + "' must be whole numbers >= 1");
    out.push_back(e.get<int64_t>());
  };
  if (v == "auto") return out;
  if (v.is_array()) for (const auto& e : v) take(e);
  else if (v.is_string()) {
    for (const auto& item : split_list(v.get<std::string>(), ",x")) take(parse_json(item));
  } else take(v);
  return out;
}

torch::Tensor occlusion(const BlackBoxCall& c, const OcclusionOptions& o) {
  const auto shape = c.x.sizes().vec();
  const size_t rank = shape.size();
  // The window covers the trailing dims it names; leading dims (an image's channels) whole.
  std::vector<int64_t> win = shape, stride = shape;
  const bool tokens = c.model.text() && rank == 2 && o.window.empty() && o.stride.empty();
  if (tokens) {  // a text's embeddings [L, D]: one token at a time
    win = {1, shape[1]};
  } else if (o.window.empty()) {  // auto: ~7 windows per side of an image, half-window strides
    for (size_t d = rank >= 2 ? rank - 2 : 0; d < rank; ++d) win[d] = std::max<int64_t>(1, (shape[d] + 6) / 7);
  } else {
    if (o.window.size() > rank) throw Error("occlusion: the window has more dims than the input " + c10::str(c.x.sizes()));
    for (size_t k = 0; k < o.window.size(); ++k) win[rank - o.window.size() + k] = o.window[k];
  }
  for (size_t d = 0; d < rank; ++d) {
    if (win[d] > shape[d])
      throw Error("occlusion: window " + c10::str(c10::IntArrayRef(win)) + " is larger than the input " + c10::str(c.x.sizes()));
    stride[d] = std::max<int64_t>(1, win[d] / 2);
    if (win[d] == shape[d]) stride[d] = shape[d];
  }
  if (!o.stride.empty()) {
    if (o.stride.size() > rank) throw Error("occlusion: the stride has more dims than the input");
    for (size_t k = 0; k < o.stride.size(); ++k) stride[rank - o.stride.size() + k] = o.stride[k];
  }
  // Every window position (row-major), as start offsets: 0, stride, ... until a window reaches the
  // end; the last one is clipped there (as Captum), so that every element is covered.
  std::vector<std::vector<int64_t>> starts{{}};
  for (size_t d = 0; d < rank; ++d) {
    std::vector<std::vector<int64_t>> next;
    for (const auto& s : starts)
      for (int64_t p = 0;; p += stride[d]) {
        next.push_back(s);
        next.back().push_back(p);
        if (p + win[d] >= shape[d]) break;
      }
    starts = std::move(next);
  }
  auto region = [&](torch::Tensor t, const std::vector<int64_t>& s) {
    for (size_t d = 0; d < rank; ++d)
      t = t.narrow(static_cast<int64_t>(d), s[d], std::min(win[d], shape[d] - s[d]));
    return t;
  };
  const double fx = batched_scores(c.model, c.x.unsqueeze(0), c.target, 1)[0].item<double>();
  const int64_t n = static_cast<int64_t>(starts.size()), numel = c.x.numel();
  torch::Tensor sum = torch::zeros({numel}, torch::kDouble), count = torch::zeros({numel}, torch::kDouble);
  std::vector<int64_t> batch_shape{0};
  batch_shape.insert(batch_shape.end(), shape.begin(), shape.end());
  for_chunks(n, c.batch, [&](int64_t b, int64_t e) {
    batch_shape[0] = e - b;
    torch::Tensor masks = torch::zeros(batch_shape, c.x.options());  // 1 inside each window
    for (int64_t k = b; k < e; ++k) region(masks[k - b], starts[k]).fill_(1.0);
    torch::Tensor inputs = c.x.unsqueeze(0) + (c.baseline - c.x).unsqueeze(0) * masks;
    torch::Tensor drop = fx - batched_scores(c.model, inputs, c.target, c.batch);
    torch::Tensor flat = masks.reshape({e - b, numel}).to(torch::kDouble);
    sum += torch::matmul(drop.unsqueeze(0), flat).squeeze(0);
    count += flat.sum(0);
    c.progress(static_cast<double>(e) / n);
  });
  c.diag["windows"] = n;
  // How many windows covered each element (every element at least once): min and max here, and the
  // whole count map as the extra array "coverage".
  c.diag["coverage_min"] = count.min().item<double>();
  c.diag["coverage_max"] = count.max().item<double>();
  c.extra["coverage"] = count.to(torch::kFloat).view(c.x.sizes());
  torch::Tensor map = (sum / count.clamp_min(1.0)).view(c.x.sizes());
  // A token's drop is split over its D embedding values, so that their sum (the token's score) is it.
  return tokens ? map / static_cast<double>(shape[1]) : map;
}

}  // namespace

void register_occlusion(Registry& r) {
  MethodInfo m;
  m.name = "occlusion";
  m.title = "Occlusion";
  m.paper = "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks";
  m.summary = "mean output drop over the sliding windows of baseline values that cover each element";
  OptionTable<OcclusionOptions> t;
  auto ints = [&t](const std::string& name, std::vector<int64_t> OcclusionOptions::*member, const std::string& help) {
    t.field(name, "ints", help,
            [name, member](const nlohmann::json& v, const OptionContext& c, OcclusionOptions& o) { o.*member = int_list(v, c, name); },
            [member](const OcclusionOptions& o) { return nlohmann::json(o.*member); }, "auto");
  };
  ints("window", &OcclusionOptions::window, "window shape over the trailing dims, e.g. 4x4 (auto: ~1/7 of each side; one token of a text)");
  ints("stride", &OcclusionOptions::stride, "window strides (auto: half the window)");
  add_blackbox(r, m, std::move(t), occlusion);
}

}  // namespace salient
