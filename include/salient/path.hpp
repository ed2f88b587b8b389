#pragma once
// Path integrals for the path methods (Integrated Gradients and friends): quadrature rules on
// [0, 1] and the batched integral of the gradient along a straight path.
#include <array>
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/model.hpp"

namespace salient {

enum class Quadrature { RiemannLeft, RiemannRight, RiemannMiddle, Trapezoid, GaussLegendre };

Quadrature parse_quadrature(const std::string&);
std::string to_string(Quadrature);
const std::vector<std::string>& quadrature_names();

// Nodes alpha_k in [0, 1] and weights w_k (summing to 1) of a rule with `steps` nodes.
struct QuadratureRule {
  std::vector<double> alphas, weights;
};
QuadratureRule quadrature_rule(Quadrature q, int64_t steps);

// (x - x0) * sum_k w_k * grad f(x0 + alpha_k (x - x0))[target], for one input x and baseline x0
// (both without batch dimension); the path points go through the model `batch` at a time. With
// `ends`, x and x0 ride along in the first pass and *ends gets f(x)[target] and f(x0)[target]: what
// completeness is measured against, from the same forward as the gradients, for no extra pass.
// `progress` (optional) hears the fraction of the path's points done after each pass: where a
// cancellation is heard.
torch::Tensor integrate_path(Model& model, const torch::Tensor& x, const torch::Tensor& x0, int64_t target,
                             const QuadratureRule& rule, int64_t batch, std::array<double, 2>* ends = nullptr,
                             const std::function<void(double)>& progress = {});

}  // namespace salient
