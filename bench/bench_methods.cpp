// Every method against its floor: one forward+backward of the same batch for gradient methods,
// the same number of forward passes, batched, for forward-only ones.
//
//   salient_bench --demo models/fashion_cnn.pt --resnet build/bench/resnet18_traced.pt
//                 [--onnx-demo fashion_cnn.onnx] [--threads 2]
//
// Every pair (floor, method) is timed in the same run; bench/run.sh turns them into ratios.
#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "salient/explain.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

std::map<std::string, std::unique_ptr<Model>> g_models;
std::map<std::string, std::vector<int64_t>> g_shapes;

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Runs `fn` per iteration and reports process CPU time / wall time (2.0 = both cores busy).
template <class Fn>
void timed(benchmark::State& state, Fn&& fn) {
  double cpu = 0, wall = 0;
  for (auto _ : state) {
    double c0 = cpu_seconds();
    auto w0 = std::chrono::steady_clock::now();
    fn();
    wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    cpu += cpu_seconds() - c0;
  }
  state.counters["cpu_per_wall"] = wall > 0 ? cpu / wall : 0;
}

torch::Tensor batch_of(const std::string& model, int64_t n) {
  std::vector<int64_t> shape{n};
  for (auto d : g_shapes[model]) shape.push_back(d);
  torch::manual_seed(1);
  return torch::randn(shape);
}

// The floor: the model's forward and one backward from the target outputs, nothing else.
void floor_forward_backward(benchmark::State& state, const std::string& name, int64_t n) {
  Model& m = *g_models[name];
  torch::Tensor x = batch_of(name, n);
  torch::Tensor t = torch::zeros({n}, torch::kLong);
  timed(state, [&] {
    torch::Tensor xi = x.clone().requires_grad_(true);
    auto out = m.module().forward({xi}).toTensor();
    auto g = torch::autograd::grad({out.gather(1, t.view({-1, 1})).sum()}, {xi});
    benchmark::DoNotOptimize(g[0].data_ptr());
  });
}

// Times `method` explaining class 0 of one input of model `name`.
void time_method(benchmark::State& state, const std::string& name, Method& method) {
  Model& m = *g_models[name];
  torch::Tensor x = batch_of(name, 1);
  torch::Tensor t = torch::zeros({1}, torch::kLong);
  // Warm: TorchScript profiles the first run and optimises at the second; CAMs and modified
  // back-propagation build their graphs at the first.
  for (int i = 0; i < 3; ++i) method.attribute(m, x, t);
  timed(state, [&] { benchmark::DoNotOptimize(method.attribute(m, x, t).map.data_ptr()); });
}

// A benchmark of a registered method with `options`, built once (its graphs survive repetitions).
std::function<void(benchmark::State&)> named(const std::string& model, const std::string& method,
                                             const nlohmann::json& options = nlohmann::json::object()) {
  std::shared_ptr<Method> m = Registry::builtin().create(method, options);
  return [model, m](benchmark::State& s) { time_method(s, model, *m); };
}

// What POST /api/explain computes for one input, in-process: new method instances, the explain
// core's predictions, the method, the record. bench/serve.sh divides the served latency by it.
void explain_in_process(benchmark::State& state, const std::string& name, const std::string& method) {
  Model& m = *g_models[name];
  InputItem item;
  item.stem = "x";
  item.tensor = batch_of(name, 1)[0].contiguous();
  timed(state, [&] {
    ExplainRequest req;
    req.methods = {method};
    Explainer ex(m, req, prepare(req, m.metadata()));
    benchmark::DoNotOptimize(ex.run({item}).at(0).maps.size());
  });
}

const char* cam_layer(const std::string& name) { return name == "demo" ? "conv2" : "layer4"; }

// Score-CAM's floor: one forward of the input to get the activations, then C masked inputs in
// forward-only batches of 32 (C = channels of the layer).
void score_cam_floor(benchmark::State& state, const std::string& name) {
  Model& m = *g_models[name];
  torch::Tensor x = batch_of(name, 1);
  const int64_t channels = name == "demo" ? 64 : 512;
  torch::Tensor masked = x.expand({32, -1, -1, -1}).contiguous();
  timed(state, [&] {
    benchmark::DoNotOptimize(m.predict(x).data_ptr());
    for (int64_t b = 0; b < channels; b += 32) benchmark::DoNotOptimize(m.predict(masked.slice(0, 0, std::min<int64_t>(32, channels - b))).data_ptr());
  });
}

// `count` forward passes of the input, `batch` at a time: the floor of a perturbation method.
void forward_floor(benchmark::State& state, Model& m, const std::string& name, int64_t count, int64_t batch) {
  torch::Tensor x = batch_of(name, 1).expand({batch, -1, -1, -1}).contiguous();
  timed(state, [&] {
    for (int64_t b = 0; b < count; b += batch) benchmark::DoNotOptimize(m.predict(x.slice(0, 0, std::min(batch, count - b))).data_ptr());
  });
}

int64_t occlusion_windows(const std::string& name) {
  const int64_t side = name == "demo" ? 28 : 224, win = (side + 6) / 7, stride = win / 2;
  const int64_t per = (side - win) / stride + 1;
  return per * per + 1;  // + the unoccluded input
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> paths;
  int threads = 0;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--demo") && i + 1 < argc) paths["demo"] = argv[++i];
    else if (!std::strcmp(argv[i], "--resnet") && i + 1 < argc) paths["resnet18"] = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--onnx-demo") && i + 1 < argc) paths["onnx-demo"] = argv[++i];
    else rest.push_back(argv[i]);
  }
  set_threads(threads);
  g_shapes["demo"] = {1, 28, 28};
  g_shapes["resnet18"] = {3, 224, 224};
  g_shapes["onnx-demo"] = g_shapes["demo"];
  // Models as users get them (forward-only passes frozen), and plain ones for the comparison.
  static std::map<std::string, std::unique_ptr<Model>> plain;
  for (const auto& [name, path] : paths) {
    g_models[name] = std::make_unique<Model>(path);
    if (name == "onnx-demo") continue;
    ModelOptions o;
    o.freeze = false;
    plain[name] = std::make_unique<Model>(path, o);
  }
  // Each benchmark runs `reps` repetitions (bench/run.sh interleaves them at random and ratios.py
  // takes medians), so that a method and its floor see the same machine conditions.
  for (const auto& [model, path] : paths) {
    const std::string name = model;
    if (name == "onnx-demo") continue;
    const bool demo = name == "demo";
    const int small = demo ? 50 : 3, big = demo ? 10 : 1, reps = demo ? 7 : 5;
    auto reg = [&](const std::string& label, std::function<void(benchmark::State&)> fn, int iterations, int r) {
      benchmark::RegisterBenchmark((name + "/" + label).c_str(), [fn](benchmark::State& s) { fn(s); })
          ->Iterations(iterations)->Repetitions(r)->ReportAggregatesOnly(true)->UseRealTime()->Unit(benchmark::kMillisecond);
    };
    reg("floor_fwd_bwd/1", [name](benchmark::State& s) { floor_forward_backward(s, name, 1); }, small, reps);
    reg("saliency", named(name, "saliency"), small, reps);
    reg("explain/saliency", [name](benchmark::State& s) { explain_in_process(s, name, "saliency"); }, small, reps);
    // The same on a second thread while the main thread has an OpenMP team of its own: libgomp then
    // counts more threads than cores and sleeps between parallel regions instead of spinning
    // (cpu_per_wall ~1.3-1.65 of 2). `salient serve` avoids it: its main thread never computes with
    // more than one intra-op thread.
    reg("explain-thread/saliency", [name](benchmark::State& s) {
      std::thread t([&] {
        at::init_num_threads();
        explain_in_process(s, name, "saliency");
      });
      t.join();
    }, small, reps);
    reg("grad-cam", named(name, "grad-cam", {{"layer", cam_layer(name)}}), small, reps);
    // Modified back-propagation: one forward and one (rewritten) backward; DeepLIFT's batch holds the
    // input and its baseline.
    reg("guided-backprop", named(name, "guided-backprop"), small, reps);
    reg("lrp/epsilon", named(name, "lrp", {{"composite", "epsilon"}}), small, reps);
    reg("lrp/epsilon-plus-flat", named(name, "lrp", {{"composite", "epsilon-plus-flat"}}), small, reps);
    reg("lrp/default", named(name, "lrp"), small, reps);
    reg("lrp/default-with-layers", named(name, "lrp", {{"layers", true}}), small, reps);
    reg("floor_fwd_bwd/2", [name](benchmark::State& s) { floor_forward_backward(s, name, 2); }, small, reps);
    reg("deeplift", named(name, "deeplift"), small, reps);
    reg("floor_fwd_bwd/50", [name](benchmark::State& s) { floor_forward_backward(s, name, 50); }, big, reps);
    for (int b : {5, 10, 25, 50})
      reg("smoothgrad50/batch" + std::to_string(b), named(name, "smoothgrad", {{"samples", 50}, {"batch-size", b}}), big, reps);
    for (int b : {10, 50})
      reg("ig50/batch" + std::to_string(b), named(name, "integrated-gradients", {{"steps", 50}, {"batch-size", b}}), big, reps);
    reg("score-cam-floor", [name](benchmark::State& s) { score_cam_floor(s, name); }, big, demo ? reps : 3);
    reg("score-cam", named(name, "score-cam", {{"layer", cam_layer(name)}}), big, demo ? reps : 3);
    // Forward-only methods against the same number of forward passes, batched (32).
    const int64_t masks = demo ? 1000 : 200;
    reg("occlusion", named(name, "occlusion"), big, reps);
    reg("occlusion-floor", [name](benchmark::State& s) { forward_floor(s, *g_models[name], name, occlusion_windows(name), 32); }, big, reps);
    reg("rise", named(name, "rise", {{"samples", masks}}), big, reps);
    reg("rise-floor", [name, masks](benchmark::State& s) { forward_floor(s, *g_models[name], name, masks, 32); }, big, reps);
    // Frozen, inference-optimised copy vs the plain module: 256 forward passes in batches of 32.
    reg("forward256/plain", [name](benchmark::State& s) { forward_floor(s, *plain[name], name, 256, 32); }, big, reps);
    reg("forward256/frozen", [name](benchmark::State& s) { forward_floor(s, *g_models[name], name, 256, 32); }, big, reps);
    if (demo && g_models.count("onnx-demo"))
      reg("forward256/onnx", [](benchmark::State& s) { forward_floor(s, *g_models["onnx-demo"], "onnx-demo", 256, 32); }, big, reps);
  }
  int bargc = static_cast<int>(rest.size());
  benchmark::Initialize(&bargc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
