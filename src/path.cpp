#include "salient/path.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "salient/error.hpp"
#include "salient/gradients.hpp"

namespace salient {

const std::vector<std::string>& quadrature_names() {
  static const std::vector<std::string> names{"riemann-left", "riemann-right", "riemann-middle", "trapezoid",
                                              "gauss-legendre"};
  return names;
}

Quadrature parse_quadrature(const std::string& s) {
  const auto& n = quadrature_names();
  for (size_t i = 0; i < n.size(); ++i)
    if (n[i] == s) return static_cast<Quadrature>(i);
  throw Error("unknown quadrature '" + s + "' (expected riemann-left, riemann-right, riemann-middle, trapezoid or gauss-legendre)");
}

std::string to_string(Quadrature q) { return quadrature_names()[static_cast<int>(q)]; }

namespace {

// Gauss-Legendre nodes and weights on [-1, 1] by Newton's method on P_n (Numerical Recipes' gauleg).
void gauss_legendre(int64_t n, std::vector<double>& x, std::vector<double>& w) {
  x.assign(n, 0.0);
  w.assign(n, 0.0);
  const int64_t m = (n + 1) / 2;
  for (int64_t i = 0; i < m; ++i) {
    double z = std::cos(M_PI * (i + 0.75) / (n + 0.5)), pp = 0;
    for (int it = 0; it < 100; ++it) {
      double p1 = 1, p2 = 0;
      for (int64_t j = 0; j < n; ++j) {
        double p3 = p2;
        p2 = p1;
        p1 = ((2.0 * j + 1) * z * p2 - j * p3) / (j + 1);
      }
      pp = n * (z * p1 - p2) / (z * z - 1);
      double z1 = z;
      z = z1 - p1 / pp;
      if (std::abs(z - z1) < 1e-15) break;
    }
    x[i] = -z;
    x[n - 1 - i] = z;
    w[i] = w[n - 1 - i] = 2.0 / ((1 - z * z) * pp * pp);
  }
}

QuadratureRule make_rule(Quadrature q, int64_t steps);

}  // namespace

QuadratureRule quadrature_rule(Quadrature q, int64_t steps) {
  if (steps < 1) throw Error("steps must be >= 1, got " + std::to_string(steps));
  // Gauss-Legendre's Newton iterations cost O(steps^2): every rule is made once per process.
  static std::mutex mutex;
  static std::map<std::pair<int, int64_t>, QuadratureRule> made;
  const std::pair<int, int64_t> key{static_cast<int>(q), steps};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = made.find(key); it != made.end()) return it->second;
  }
  QuadratureRule r = make_rule(q, steps);
  std::lock_guard<std::mutex> lock(mutex);
  if (made.size() < 256) made.emplace(key, r);
  return r;
}

namespace {

QuadratureRule make_rule(Quadrature q, int64_t steps) {
  QuadratureRule r;
  const double m = static_cast<double>(steps);
  switch (q) {
    case Quadrature::RiemannLeft:
    case Quadrature::RiemannRight:
    case Quadrature::RiemannMiddle: {
      const double shift = q == Quadrature::RiemannLeft ? 0.0 : q == Quadrature::RiemannRight ? 1.0 : 0.5;
      for (int64_t k = 0; k < steps; ++k) {
        r.alphas.push_back((k + shift) / m);
        r.weights.push_back(1.0 / m);
      }
      break;
    }
    case Quadrature::Trapezoid:
      if (steps < 2) throw Error("the trapezoid rule needs steps >= 2, got " + std::to_string(steps));
      for (int64_t k = 0; k < steps; ++k) {
        r.alphas.push_back(k / (m - 1));
        r.weights.push_back((k == 0 || k == steps - 1 ? 0.5 : 1.0) / (m - 1));
      }
      break;
    case Quadrature::GaussLegendre: {
      std::vector<double> x, w;
      gauss_legendre(steps, x, w);
      for (int64_t k = 0; k < steps; ++k) {
        r.alphas.push_back(0.5 * (x[k] + 1));
        r.weights.push_back(0.5 * w[k]);
      }
      break;
    }
  }
  return r;
}

// A rule's numbers b..e then `zeros` zeros, as a tensor of the model's type on its device shaped
// `shape` (holding e - b + zeros numbers): written in place on the host (no conversion op), moved
// only for another device.
torch::Tensor rule_tensor(const std::vector<double>& v, int64_t b, int64_t e, int64_t zeros, c10::IntArrayRef shape,
                          const torch::TensorOptions& as_model) {
  torch::Tensor t = torch::empty(shape, as_model.device(torch::kCPU));
  if (t.scalar_type() == torch::kFloat) {
    std::fill(std::copy(v.begin() + b, v.begin() + e, t.data_ptr<float>()), t.data_ptr<float>() + t.numel(), 0.0f);
  } else if (t.scalar_type() == torch::kDouble) {
    std::fill(std::copy(v.begin() + b, v.begin() + e, t.data_ptr<double>()), t.data_ptr<double>() + t.numel(), 0.0);
  } else {
    t.zero_();
    t.view({-1}).slice(0, 0, e - b).copy_(torch::from_blob(const_cast<double*>(v.data()) + b, {e - b}, torch::kDouble));
  }
  return t.to(as_model.device());
}

}  // namespace

torch::Tensor integrate_path(Model& model, const torch::Tensor& x, const torch::Tensor& x0, int64_t target,
                             const QuadratureRule& rule, int64_t batch, std::array<double, 2>* ends,
                             const std::function<void(double)>& progress) {
  const int64_t steps = static_cast<int64_t>(rule.alphas.size());
  // Every op here runs once per pass or per input: on a small model (a text classifier) their
  // dispatch, not their arithmetic, is what they cost, so there are as few as can be.
  const auto as_model = x.options().dtype(model.dtype());
  const torch::Tensor diff = (x - x0).to(model.dtype()), start = x0.to(model.dtype());
  std::vector<int64_t> bshape(x.dim() + 1, 1);
  torch::Tensor sum;  // sum_k w_k g_k: in the model's type for one pass, passes summed in double
  bool first = true;
  for_chunks(steps, batch, [&](int64_t b, int64_t e) {
    bshape[0] = e - b;
    const bool with_ends = ends && first;
    std::vector<int64_t> pshape = x.sizes().vec();
    pshape.insert(pshape.begin(), (e - b) + (with_ends ? 2 : 0));
    // x0 + alpha_k (x - x0) for the pass's nodes, then (first pass, with ends) x and x0 themselves
    torch::Tensor points = torch::empty(pshape, as_model);
    torch::Tensor head = with_ends ? points.slice(0, 0, e - b) : points;
    torch::addcmul_out(head, start, rule_tensor(rule.alphas, b, e, 0, bshape, as_model), diff);
    if (with_ends) {
      points[e - b].copy_(x);
      points[e - b + 1].copy_(x0);
    }
    // The weights seed the backward pass (x and x0 get 0): row k's gradient comes out as w_k g_k,
    // and the pass's share of the integral is their sum.
    torch::Tensor scores;
    torch::Tensor g = target_gradient(model, points, target, with_ends ? &scores : nullptr,
                                      rule_tensor(rule.weights, b, e, with_ends ? 2 : 0, {points.size(0)}, as_model));
    if (with_ends) {  // read where they are on the host (a float model's: no op)
      const bool as_is = scores.is_cpu() && scores.scalar_type() == torch::kFloat;
      const torch::Tensor f = as_is ? scores : scores.to(torch::kCPU, torch::kDouble);
      if (as_is) {
        *ends = {f.accessor<float, 1>()[e - b], f.accessor<float, 1>()[e - b + 1]};
      } else {
        *ends = {f.accessor<double, 1>()[e - b], f.accessor<double, 1>()[e - b + 1]};
      }
    }
    torch::Tensor part = (with_ends ? g.slice(0, 0, e - b) : g).sum(0);
    sum = first && e == steps ? part : sum.defined() ? sum + part.to(torch::kDouble) : part.to(torch::kDouble);
    first = false;
    if (progress) progress(static_cast<double>(e) / static_cast<double>(steps));
  });
  torch::Tensor a = sum * diff;
  return a.scalar_type() == x.scalar_type() ? a : a.to(x.scalar_type());
}

}  // namespace salient
