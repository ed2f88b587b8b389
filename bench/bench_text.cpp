// IG-50 at the embeddings of the langid demo, per input, against its floor: the forward and backward
// passes of the same 50 path points in one batch and nothing else, written by hand in plain LibTorch
// for this model (embedding lookup, masked mean, linear layer), the ids already made. Both run over
// every held-out line of models/langid/test.txt, interleaved, in one process.
//   usage: salient_bench_text MODEL_DIR [THREADS] [REPEATS] [STEPS]
// Prints {"inputs", "salient_ms", "floor_ms", "ratio", "tokenize_ms"} as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <torch/csrc/autograd/autograd.h>

#include "salient/model.hpp"
#include "salient/registry.hpp"
#include "salient/text.hpp"

using namespace salient;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// The floor: the 50 points between the pad baseline and the input's embeddings, through the rest of
// the model, and the gradient back to them.
double floor_pass(torch::jit::Module& m, const torch::Tensor& ids, const torch::Tensor& base_ids, int64_t steps) {
  torch::jit::Module emb = m.attr("embedding").toModule(), cls = m.attr("classifier").toModule();
  torch::Tensor x, b;
  {
    torch::NoGradGuard no_grad;
    x = emb.forward({ids}).toTensor();
    b = emb.forward({base_ids}).toTensor();
  }
  const torch::Tensor alpha = (torch::arange(steps, torch::kFloat) + 0.5) / static_cast<double>(steps);
  torch::Tensor path = (b + alpha.view({-1, 1, 1}) * (x - b)).requires_grad_(true);  // [steps, L, D]
  const torch::Tensor mask = (ids != 0).to(torch::kFloat).unsqueeze(2);
  const torch::Tensor pooled = (path * mask).sum(1) / mask.sum(1).clamp_min(1.0);
  const torch::Tensor out = cls.forward({pooled}).toTensor();
  const torch::Tensor g = torch::autograd::grad({out.select(1, 0).sum()}, {path})[0];
  return ((x - b) * g.mean(0)).sum().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: salient_bench_text MODEL_DIR [THREADS] [REPEATS]\n");
    return 2;
  }
  const std::string dir = argv[1];
  set_threads(argc > 2 ? std::atoi(argv[2]) : 2);
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  const int64_t steps = argc > 4 ? std::atoll(argv[4]) : 50;
  Model model(dir + "/langid.pt");
  const WordPiece& tok = model.tokenizer();
  std::vector<std::string> lines;
  {
    std::ifstream in(dir + "/test.txt");
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  auto ig = Registry::builtin().create("integrated-gradients", {{"steps", steps}, {"batch-size", std::max<int64_t>(2, steps)}}, model.metadata());
  const std::string layer = model.default_embedding_layer();
  torch::jit::Module plain = torch::jit::load(dir + "/langid.pt");
  plain.eval();
  for (auto p : plain.parameters()) p.set_requires_grad(false);
  const torch::Tensor target = torch::tensor({int64_t{0}});  // a constant, as the floor's
  double embed_total = 0, salient_total = 0, floor_total = 0, tokenize_total = 0, sink = 0;
  int64_t n = 0;
  for (int r = 0; r < repeats; ++r)
    for (const auto& line : lines) {
      const auto t0 = Clock::now();
      const Tokenized t = tok.encode(line);
      const torch::Tensor ids = torch::tensor(t.ids, torch::kLong).unsqueeze(0);
      const auto t1 = Clock::now();
      Clock::time_point te;
      {  // Salient: embedding mode, the embeddings, IG-50 from the pad baseline (with f(x), f(baseline)), token scores
        EmbeddingScope scope(model, layer, ids);
        const torch::Tensor emb = model.embed(ids);
        te = Clock::now();
        const Attribution a = ig->attribute(model, emb, target);
        sink += a.map.sum(-1)[0][0].item<double>();
      }
      const auto t2 = Clock::now();
      torch::Tensor base = ids.clone();
      base.slice(1, 1, base.size(1) - 1).fill_(tok.pad_id());
      sink += floor_pass(plain, ids, base, steps);
      const auto t3 = Clock::now();
      if (r > 0 || repeats == 1) {  // the first pass warms up both
        tokenize_total += ms(t0, t1);
        salient_total += ms(t1, t2);
        embed_total += ms(t1, te);
        floor_total += ms(t2, t3);
        ++n;
      }
    }
  std::printf("{\"inputs\": %lld, \"salient_ms\": %.4f, \"floor_ms\": %.4f, \"ratio\": %.3f, \"tokenize_ms\": %.4f, \"embed_ms\": %.4f, \"sink\": %.3g}\n",
              static_cast<long long>(n), salient_total / n, floor_total / n, salient_total / floor_total, tokenize_total / n, embed_total / n, sink);
  return 0;
}
