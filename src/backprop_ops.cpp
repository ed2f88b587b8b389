// The operators a rewritten graph calls (see backprop.hpp). Each returns the original forward value
// unchanged and replaces the gradient with its rule in backward. Registered once, process-wide, as
// `salient::<name>`; forward kernels are composite, so the same code runs on any device.
#include <deque>
#include <map>
#include <mutex>
#include <optional>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "salient/backprop.hpp"
#include "salient/lrp_rules.hpp"

namespace salient {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// z + eps * sign(z), with sign(0) = +1: the denominator of every LRP rule.
Tensor stabilize(const Tensor& z, double eps) {
  eps = std::max(eps, 1e-12);
  return z + (z >= 0).to(z.scalar_type()).mul(2 * eps).sub(eps);
}

// ---- ReLU rules: Guided Backprop, Deconvnet, and LRP's pass-through ----

struct ReluRule : torch::autograd::Function<ReluRule> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor y, int64_t mode, std::string site) {
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["site"] = site;
    if (mode == static_cast<int64_t>(ReluMode::Guided)) ctx->save_for_backward({y});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto mode = static_cast<ReluMode>(ctx->saved_data["mode"].toInt());
    Tensor g = grads[0], out;
    switch (mode) {
      case ReluMode::Guided: out = g.clamp_min(0) * (ctx->get_saved_variables()[0] > 0); break;
      case ReluMode::Deconv: out = g.clamp_min(0); break;
      case ReluMode::Pass: out = g; break;
      case ReluMode::GuidedAny: break;
    }
    if (mode == ReluMode::GuidedAny) {
      // The activation's own backward (its input stays attached) applies its local gradient to
      // the positive part of the incoming gradient: for ReLU exactly the guided rule.
      Tensor pos = g.clamp_min(0);
      const std::string& site = ctx->saved_data["site"].toStringRef();
      SiteRecorder::add_out(site, "guided", g);
      return {Tensor(), pos, Tensor(), Tensor()};
    }
    if (mode != ReluMode::Pass) {  // LRP's pass-through changes nothing worth recording
      const std::string& site = ctx->saved_data["site"].toStringRef();
      const char* name = mode == ReluMode::Guided ? "guided" : "deconv";
      SiteRecorder::add_out(site, name, g);
      SiteRecorder::add_in(site, name, out, Tensor());
    }
    return {out, Tensor(), Tensor(), Tensor()};
  }
};

Tensor relu_rule(const Tensor& x, const Tensor& y, int64_t mode, std::string site) {
  return ReluRule::apply(x, y, mode, std::move(site));
}

// ---- LRP's epsilon rule around any op that is affine in its path inputs: x' = lrp_in(x),
// y = op(x', ...), y' = lrp_out(y). Backward: R / stab(y), the op's own vector-Jacobian product,
// then times x: R_x = x * J^T (R / stab(y)). ----

struct LrpIn : torch::autograd::Function<LrpIn> {
  static Tensor forward(AutogradContext* ctx, Tensor x, std::string site) {
    ctx->saved_data["site"] = site;
    ctx->save_for_backward({x});
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Tensor x = ctx->get_saved_variables()[0];
    Tensor r = grads[0] * x;
    SiteRecorder::add_in(ctx->saved_data["site"].toStringRef(), "epsilon", r, x);
    return {r, Tensor()};
  }
};

struct LrpOut : torch::autograd::Function<LrpOut> {
  static Tensor forward(AutogradContext* ctx, Tensor y, double eps, std::string site) {
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["site"] = site;
    ctx->save_for_backward({y});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    SiteRecorder::add_out(ctx->saved_data["site"].toStringRef(), "epsilon", grads[0]);
    return {grads[0] / stabilize(ctx->get_saved_variables()[0], ctx->saved_data["eps"].toDouble()), Tensor(), Tensor()};
  }
};

Tensor lrp_in(const Tensor& x, std::string site) { return LrpIn::apply(x, std::move(site)); }
Tensor lrp_out(const Tensor& y, double eps, std::string site) { return LrpOut::apply(y, eps, std::move(site)); }

// ---- LRP rules of convolutions and linear layers, optionally with the batch norm that follows
// folded in (the canonizer). ----

struct LayerGeometry {
  bool conv = false;
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;

  Tensor forward(const Tensor& u, const Tensor& w, const Tensor& b = Tensor()) const {
    if (!conv) return at::linear(u, w, b.defined() ? c10::optional<Tensor>(b) : c10::nullopt);
    std::vector<int64_t> out_pad(stride.size(), 0);
    return at::convolution(u, w, b.defined() ? c10::optional<Tensor>(b) : c10::nullopt, stride, padding, dilation,
                           false, out_pad, groups);
  }
  // J^T g of u -> forward(u, w): the input gradient of the layer with weights w.
  Tensor vjp(const Tensor& g, const Tensor& u, const Tensor& w) const {
    if (!conv) return g.matmul(w);
    std::vector<int64_t> out_pad(stride.size(), 0);
    return std::get<0>(at::convolution_backward(g, u, w, c10::nullopt, stride, padding, dilation, false, out_pad, groups,
                                                {true, false, false}));
  }
  // A per-output-channel vector [C] shaped to broadcast against the layer's output.
  Tensor channel(const Tensor& v, int64_t dims) const {
    std::vector<int64_t> shape(dims, 1);
    if (conv) {
      shape[1] = v.size(0);
    } else {
      shape.back() = v.size(0);
    }
    return v.view(shape);
  }
};

// One term of a rule: z += sign * f(input, weight, bias); R_x += sign * input * J_weight^T s.
struct Term {
  Tensor input, weight, bias;
  double sign = 1.0;
};

// sum over terms of f, and the relevance they pass down for the normalised relevance s.
Tensor terms_forward(const LayerGeometry& geo, const std::vector<Term>& terms) {
  Tensor z;
  for (const auto& t : terms) {
    Tensor f = geo.forward(t.input, t.weight, t.bias) * t.sign;
    z = z.defined() ? z + f : f;
  }
  return z;
}
Tensor terms_backward(const LayerGeometry& geo, const std::vector<Term>& terms, const Tensor& s, bool times_input = true) {
  Tensor r;
  for (const auto& t : terms) {
    Tensor v = geo.vjp(s, t.input, t.weight);
    if (times_input) v = v * t.input;
    v = v * t.sign;
    r = r.defined() ? r + v : v;
  }
  return r;
}

// A rule's weights (clamped, boosted, folded with batch norm) are made once per version of the
// layer's parameters and kept while those live: a model's parameters do not change between two
// explanations, and remaking them costs ~8 ms a pass on ResNet-18. Process-wide; an entry goes
// when its parameters are freed or modified (their version counter moves).
std::vector<Tensor> modified_weights(const std::vector<Tensor>& sources, const std::string& rule_key,
                                     const std::function<std::vector<Tensor>()>& make) {
  using Weak = c10::weak_intrusive_ptr<c10::TensorImpl>;
  struct Entry {
    std::vector<std::optional<Weak>> sources;  // nullopt: an absent (undefined) parameter
    std::vector<uint32_t> versions;
    std::vector<Tensor> values;
    bool expired() const {
      for (const auto& w : sources)
        if (w && w->expired()) return true;
      return false;
    }
  };
  static std::mutex mutex;
  static std::map<std::string, Entry> cache;
  std::string key = rule_key;
  std::vector<uint32_t> versions;
  for (const auto& t : sources) {
    key += ":" + std::to_string(reinterpret_cast<uintptr_t>(t.defined() ? t.unsafeGetTensorImpl() : nullptr));
    versions.push_back(t.defined() ? t._version() : 0);
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end() && !it->second.expired() && it->second.versions == versions) return it->second.values;
  }
  Entry e;
  for (const auto& t : sources) e.sources.push_back(t.defined() ? std::optional<Weak>(Weak(t.getIntrusivePtr())) : std::nullopt);
  e.versions = versions;
  e.values = make();
  std::lock_guard<std::mutex> lock(mutex);
  for (auto it = cache.begin(); it != cache.end();) it = it->second.expired() ? cache.erase(it) : std::next(it);
  cache[key] = e;
  return e.values;
}

// What an lrp_layer op applies, by id (the op's last argument): the rule (data, see lrp_rules.hpp),
// its parameters by name, the z^B bounds and the layer's name. Registered when a graph is built;
// process-wide, append-only (a few entries per rewritten graph).
struct LayerSpec {
  const lrp::Rule* rule = nullptr;
  lrp::Params params;
  std::vector<double> low, high;
  std::string site;
};
std::mutex g_specs_mutex;
std::deque<LayerSpec> g_specs;

}  // namespace

int64_t register_lrp_layer(const lrp::Rule& rule, lrp::Params params, std::vector<double> low, std::vector<double> high,
                           std::string site) {
  std::lock_guard<std::mutex> lock(g_specs_mutex);
  g_specs.push_back({&rule, std::move(params), std::move(low), std::move(high), std::move(site)});
  return static_cast<int64_t>(g_specs.size()) - 1;
}

namespace {

const LayerSpec& layer_spec(int64_t id) {
  std::lock_guard<std::mutex> lock(g_specs_mutex);
  TORCH_CHECK(id >= 0 && id < static_cast<int64_t>(g_specs.size()), "lrp: unknown layer id ", id);
  return g_specs[static_cast<size_t>(id)];  // a deque's elements stay where they are
}

struct LrpLayer : torch::autograd::Function<LrpLayer> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor y, Tensor w, c10::optional<Tensor> b, bool conv,
                        std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
                        int64_t groups, c10::optional<Tensor> bn_weight, c10::optional<Tensor> bn_bias,
                        c10::optional<Tensor> bn_mean, c10::optional<Tensor> bn_var, double bn_eps, int64_t layer) {
    const LayerSpec& spec = layer_spec(layer);
    TORCH_CHECK(conv || !bn_var || x.dim() == 2, "lrp: a batch norm after the linear layer at ", spec.site,
                " is folded only for [N, features] inputs; use --option canonize=false");
    if (spec.rule->name == "zbox" && !spec.low.empty()) {
      const int64_t channels = conv ? x.size(1) : x.size(-1);
      for (const auto* v : {&spec.low, &spec.high})
        TORCH_CHECK(v->size() == 1 || static_cast<int64_t>(v->size()) == channels, "lrp: zbox bounds at ", spec.site,
                    " have ", v->size(), " values; the layer's input has ", channels, " channels (give 1 or ", channels, ")");
    }
    ctx->saved_data["conv"] = conv;
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["bn_eps"] = bn_eps;
    ctx->saved_data["layer"] = layer;
    auto opt = [](const c10::optional<Tensor>& t) { return t ? *t : Tensor(); };
    ctx->save_for_backward({x, y, w, opt(b), opt(bn_weight), opt(bn_bias), opt(bn_mean), opt(bn_var)});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor x = saved[0], y = saved[1], w0 = saved[2], b0 = saved[3];
    LayerGeometry geo;
    geo.conv = ctx->saved_data["conv"].toBool();
    geo.stride = ctx->saved_data["stride"].toIntVector();
    geo.padding = ctx->saved_data["padding"].toIntVector();
    geo.dilation = ctx->saved_data["dilation"].toIntVector();
    geo.groups = ctx->saved_data["groups"].toInt();
    const LayerSpec& spec = layer_spec(ctx->saved_data["layer"].toInt());
    const lrp::Rule& rule = *spec.rule;
    const double stab = rule.stabiliser.empty() ? 1e-6 : spec.params.at(rule.stabiliser);  // 1e-6: as Zennit
    const Tensor R = grads[0];
    const bool folded = saved[7].defined();  // the running variance: weight and bias are optional
    Tensor out;

    if (rule.output_is_z) {
      // z is the forward output itself; a folded batch norm only scales the channels.
      Tensor s = R / stabilize(y, stab);
      if (folded) {
        Tensor scale = (saved[7] + ctx->saved_data["bn_eps"].toDouble()).rsqrt();
        if (saved[4].defined()) scale = scale * saved[4];
        s = s * geo.channel(scale, s.dim());
      }
      out = x * geo.vjp(s, x, w0);
    } else {
      // Every term's modified weight and bias, made once per version of the layer's parameters
      // (cached), in the order of the rule's passes and terms.
      const std::vector<Tensor> sources(saved.begin() + 2, saved.end());
      std::string key = rule.name;
      for (const auto& [name, v] : spec.params) key += ":" + name + "=" + std::to_string(v);
      const std::vector<Tensor> W = modified_weights(sources, key, [&] {
        Tensor w = w0, b = b0;
        if (folded) std::tie(w, b) = fold_batch_norm(w0, b0, saved[4], saved[5], saved[6], saved[7], ctx->saved_data["bn_eps"].toDouble());
        std::vector<Tensor> made;
        for (const auto& pass : rule.passes)
          for (const auto& term : pass.terms) {
            made.push_back(term.weight(w, spec.params));
            made.push_back(term.bias && b.defined() ? term.weight(b, spec.params) : Tensor());
          }
        return made;
      });
      const bool negative_inputs = (x < 0).any().item<bool>();
      auto bound = [&](const std::vector<double>& given, bool low) {
        if (given.empty()) {  // each input's own range
          Tensor flat = x.reshape({x.size(0), -1});
          std::vector<int64_t> shape(x.dim(), 1);
          shape[0] = x.size(0);
          return (low ? flat.amin(1) : flat.amax(1)).view(shape).expand_as(x).contiguous();
        }
        Tensor v = torch::tensor(given, x.options());
        if (v.numel() == 1) return torch::full_like(x, v.item<double>());
        std::vector<int64_t> shape(x.dim(), 1);
        shape[geo.conv ? 1 : x.dim() - 1] = v.numel();
        return v.view(shape).expand_as(x).contiguous();
      };
      size_t k = 0;
      for (const auto& pass : rule.passes) {
        std::vector<Term> terms;
        for (const auto& term : pass.terms) {
          const Tensor& wt = W[k++];
          const Tensor& bt = W[k++];
          Tensor input;
          switch (term.input) {
            case lrp::Input::X: input = x; break;
            case lrp::Input::XPos: input = negative_inputs ? x.clamp_min(0) : x; break;
            case lrp::Input::XNeg: input = negative_inputs ? x.clamp_max(0) : Tensor(); break;
            case lrp::Input::Low: input = bound(spec.low, true); break;
            case lrp::Input::High: input = bound(spec.high, false); break;
            case lrp::Input::Ones: input = torch::ones_like(x); break;
          }
          if (input.defined()) terms.push_back({input, wt, bt, term.sign});
        }
        Tensor r = R;
        if (pass.mask != lrp::Mask::All) {
          r = R * (pass.mask == lrp::Mask::PositiveOutput ? y > 0 : y < 0);
          if (!r.ne(0).any().item<bool>()) continue;  // no output of that sign: nothing to pass
        }
        const double coefficient = pass.sign * (pass.coefficient.empty() ? 1.0 : spec.params.at(pass.coefficient));
        if (coefficient == 0.0) continue;
        Tensor part = coefficient * terms_backward(geo, terms, r / stabilize(terms_forward(geo, terms), stab), rule.times_input);
        out = out.defined() ? out + part : part;
      }
      if (!out.defined()) out = torch::zeros_like(x);
    }
    SiteRecorder::add_out(spec.site, rule.name, R);
    SiteRecorder::add_in(spec.site, rule.name, out, x);
    variable_list result(15);
    result[0] = out;
    return result;
  }
};

Tensor lrp_layer(const Tensor& x, const Tensor& y, const Tensor& w, const c10::optional<Tensor>& b, bool conv,
                 std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups,
                 const c10::optional<Tensor>& bn_weight, const c10::optional<Tensor>& bn_bias,
                 const c10::optional<Tensor>& bn_mean, const c10::optional<Tensor>& bn_var, double bn_eps, int64_t layer) {
  return LrpLayer::apply(x, y, w, b, conv, std::move(stride), std::move(padding), std::move(dilation), groups, bn_weight,
                         bn_bias, bn_mean, bn_var, bn_eps, layer);
}

// ---- DeepLIFT (rescale rule). The batch is [inputs; baselines]: the first half's multipliers are
// (f(x) - f(x0)) / (x - x0) instead of f'(x). ----

constexpr double kDeepLiftEps = 1e-10;  // |x - x0| below this: the gradient (as Captum)

struct DlRescale : torch::autograd::Function<DlRescale> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor y) {
    TORCH_CHECK(x.size(0) % 2 == 0, "deeplift: the batch must hold inputs and baselines");
    ctx->save_for_backward({x, y});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const int64_t n = saved[0].size(0) / 2;
    Tensor dx = saved[0].slice(0, 0, n) - saved[0].slice(0, n), dy = saved[1].slice(0, 0, n) - saved[1].slice(0, n);
    Tensor far = dx.abs() >= kDeepLiftEps;
    Tensor m = torch::where(far, dy / torch::where(far, dx, torch::ones_like(dx)), torch::zeros_like(dx));
    Tensor g = grads[0];
    Tensor gx = g * torch::cat({m, m});
    // Where x == x0 the op's own gradient applies: it flows through y into the original op.
    Tensor near = torch::cat({far, far}).logical_not();
    Tensor gy = near.any().item<bool>() ? g * near : Tensor();
    return {gx, gy};
  }
};

Tensor dl_rescale(const Tensor& x, const Tensor& y) { return DlRescale::apply(x, y); }

// Max pooling of any rank, plain or adaptive: kind 1-3 = max_pool{1,2,3}d(kernel=a, stride=b,
// padding=c, dilation=d, ceil_mode), 11-13 = adaptive_max_pool{1,2,3}d(output_size=a).
Tensor max_pool(int64_t kind, const Tensor& x, const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                const std::vector<int64_t>& c, const std::vector<int64_t>& d, bool ceil) {
  switch (kind) {
    case 1: return at::max_pool1d(x, a, b, c, d, ceil);
    case 2: return at::max_pool2d(x, a, b, c, d, ceil);
    case 3: return at::max_pool3d(x, a, b, c, d, ceil);
    case 11: return std::get<0>(at::adaptive_max_pool1d(x, a));
    case 12: return std::get<0>(at::adaptive_max_pool2d(x, a));
    case 13: return std::get<0>(at::adaptive_max_pool3d(x, a));
  }
  TORCH_CHECK(false, "deeplift: unknown max-pool kind ", kind);
}

struct DlMaxPool : torch::autograd::Function<DlMaxPool> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor y, int64_t kind, std::vector<int64_t> a,
                        std::vector<int64_t> b, std::vector<int64_t> c, std::vector<int64_t> d, bool ceil_mode) {
    TORCH_CHECK(x.size(0) % 2 == 0, "deeplift: the batch must hold inputs and baselines");
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["a"] = a;
    ctx->saved_data["b"] = b;
    ctx->saved_data["c"] = c;
    ctx->saved_data["d"] = d;
    ctx->saved_data["ceil"] = ceil_mode;
    ctx->save_for_backward({x, y});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor x = saved[0], y = saved[1];
    const int64_t kind = ctx->saved_data["kind"].toInt();
    const auto a = ctx->saved_data["a"].toIntVector(), b = ctx->saved_data["b"].toIntVector(),
               c = ctx->saved_data["c"].toIntVector(), d = ctx->saved_data["d"].toIntVector();
    const bool ceil = ctx->saved_data["ceil"].toBool();
    const int64_t n = x.size(0) / 2;
    // The pooling's own vector-Jacobian product at `at`: routes v to the maxima of `at`.
    auto unpool = [&](const Tensor& v, const Tensor& at) {
      torch::AutoGradMode on(true);
      Tensor leaf = at.detach().requires_grad_(true);
      return torch::autograd::grad({max_pool(kind, leaf, a, b, c, d, ceil)}, {leaf}, {v})[0];
    };
    const Tensor x1 = x.slice(0, 0, n), x0 = x.slice(0, n), y1 = y.slice(0, 0, n), y0 = y.slice(0, n);
    const Tensor g = grads[0].slice(0, 0, n);
    // As Captum: y - y0 split at the two maxima, max(y, y0) - y0 at the input's and y - max(y, y0)
    // at the baseline's; then divided by x - x0 (the gradient where x == x0).
    const Tensor top = torch::max(y1, y0);
    Tensor delta = unpool(g * (top - y0), x1) + unpool(g * (y1 - top), x0);
    Tensor dx = x1 - x0;
    Tensor far = dx.abs() >= kDeepLiftEps;
    Tensor m = torch::where(far, delta / torch::where(far, dx, torch::ones_like(dx)), unpool(g, x1));
    variable_list out(8);
    out[0] = torch::cat({m, torch::zeros_like(m)});
    return out;
  }
};

Tensor dl_maxpool(const Tensor& x, const Tensor& y, int64_t kind, std::vector<int64_t> a, std::vector<int64_t> b,
                  std::vector<int64_t> c, std::vector<int64_t> d, bool ceil_mode) {
  return DlMaxPool::apply(x, y, kind, std::move(a), std::move(b), std::move(c), std::move(d), ceil_mode);
}

}  // namespace

// Referenced from backprop.cpp so that the linker keeps this file (and its registration).
void backprop_ops_linked() {}

}  // namespace salient

TORCH_LIBRARY(salient, m) {
  using namespace salient;
  m.def("relu_rule(Tensor x, Tensor y, int mode, str site) -> Tensor", &relu_rule);
  m.def("lrp_in(Tensor x, str site) -> Tensor", &lrp_in);
  m.def("lrp_out(Tensor y, float epsilon, str site) -> Tensor", &lrp_out);
  m.def("lrp_layer(Tensor x, Tensor y, Tensor w, Tensor? b, bool conv, int[] stride, int[] padding, int[] dilation, "
        "int groups, Tensor? bn_weight, Tensor? bn_bias, Tensor? bn_mean, Tensor? bn_var, float bn_eps, int layer) -> Tensor",
        &lrp_layer);
  m.def("dl_rescale(Tensor x, Tensor y) -> Tensor", &dl_rescale);
  m.def("dl_maxpool(Tensor x, Tensor y, int kind, int[] a, int[] b, int[] c, int[] d, bool ceil_mode) -> Tensor",
        &dl_maxpool);
}
