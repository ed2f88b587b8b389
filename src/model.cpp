#include "salient/model.hpp"

#include <filesystem>
#include <limits>
#include <set>
#include <fstream>
#include <cmath>
#include <thread>

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/cuda.h>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/layers.hpp"
#include "salient/method.hpp"
#include "salient/onnx.hpp"
#include "salient/text.hpp"

namespace salient {

namespace {

// The module at a dotted path ("encoder.embedding") of `root`.
torch::jit::Module submodule(const torch::jit::Module& root, const std::string& path) {
  torch::jit::Module m = root;
  for (const auto& part : split_list(path, ".")) m = m.attr(part).toModule();
  return m;
}

}  // namespace

// What embedding mode needs of layer `path` when it is an nn.EmbeddingBag (else nothing): its mode,
// padding_idx and weight; refused when its tokens' vectors cannot be replaced one by one.
std::optional<Model::Bag> Model::embedding_bag(const torch::jit::Module& root, const std::string& path, const LayerCapture& capture) {
  const torch::jit::Module m = submodule(root, path);
  const auto qn = m.type()->name();
  if (!qn || qn->name() != "EmbeddingBag") return std::nullopt;
  const std::string named = "the EmbeddingBag '" + path + "'";
  if (!capture.called_on_input(0))
    throw Error(named + " is called with offsets or per-sample weights, or on other than the model's ids: its tokens can be "
                "attributed only when it is called on the ids [N, L] alone");
  Model::Bag b;
  if (m.hasattr("mode")) {  // scripted: the module's own attributes
    b.mode = m.attr("mode").toStringRef();
    if (m.hasattr("max_norm") && !m.attr("max_norm").isNone())
      throw Error(named + " has max_norm, which rescales its vectors as it looks them up: its tokens' vectors are not its weights");
    if (m.hasattr("padding_idx") && m.attr("padding_idx").isInt()) b.padding = m.attr("padding_idx").toInt();
  } else {  // traced: the attributes are gone, the constants of its aten::embedding_bag call remain
    // embedding_bag(weight, input, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights, include_last_offset, padding_idx)
    const auto graph = m.get_method("forward").graph();
    for (torch::jit::Node* n : graph->nodes()) {
      if (n->kind() != c10::Symbol::fromQualString("aten::embedding_bag")) continue;
      if (!b.mode.empty()) throw Error(named + " calls embedding_bag twice: its tokens' vectors are not one lookup");
      const auto mode = torch::jit::toIValue(n->input(4));
      if (!mode || !mode->isInt() || mode->toInt() < 0 || mode->toInt() > 2) throw Error(named + ": its mode is not a constant");
      b.mode = std::vector<std::string>{"sum", "mean", "max"}[static_cast<size_t>(mode->toInt())];
      if (n->inputs().size() > 6 && n->input(6)->type()->kind() != c10::TypeKind::NoneType)
        throw Error(named + " is called with per-sample weights: its tokens' vectors are not its weights");
      if (n->inputs().size() > 8)
        if (const auto pad = torch::jit::toIValue(n->input(8)); pad && pad->isInt()) b.padding = pad->toInt();
    }
  }
  if (b.mode != "sum" && b.mode != "mean" && b.mode != "max") throw Error(named + " has mode '" + b.mode + "' (expected sum, mean or max)");
  if (!m.hasattr("weight") || !m.attr("weight").isTensor()) throw Error(named + " has no weight tensor");
  b.weight = m.attr("weight").toTensor().detach();
  return b;
}

namespace {

torch::Device parse_device(const std::string& text) {
  try {
    torch::Device d(text);
    if (d.is_cuda() && !torch::cuda::is_available())
      throw Error("device '" + text + "' is not available: this LibTorch build sees no CUDA device");
    return d;
  } catch (const c10::Error&) {
    throw Error("unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
  }
}

std::string shape_str(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

namespace fs = std::filesystem;

// How far (relative to the output's largest magnitude) a frozen copy may stray from the plain module.
constexpr double kForwardCopyTolerance = 1e-4;

namespace {

// The library holding torchvision's TorchScript operators, found by a documented search: the file
// $SALIENT_TORCHVISION_OPS names, else Debian's python3-torchvision (its _C*.so needs no Python).
// dlopen'ed once, RTLD_GLOBAL (its operators register with LibTorch as it loads).
void load_torchvision_ops(const std::string& model, const std::string& why) {
  static std::mutex mutex;
  static bool loaded = false;
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded) return;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SALIENT_TORCHVISION_OPS"); env && *env) {
    candidates.push_back(env);
  } else {
    std::error_code ec;
    for (const char* dir : {"/usr/lib/python3/dist-packages/torchvision", "/usr/local/lib/python3/dist-packages/torchvision"})
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("_C", 0) == 0 && e.path().extension() == ".so") candidates.push_back(e.path().string());
      }
  }
  std::string failures;
  for (const auto& c : candidates) {
    if (::dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      loaded = true;
      return;
    }
    const char* err = ::dlerror();
    failures += "; " + c + ": " + (err ? err : "cannot be loaded");
  }
  const std::string op = why.substr(why.find("torchvision::"), why.find_first_of(" .(", why.find("torchvision::")) - why.find("torchvision::"));
  throw Error("'" + model + "' uses torchvision's operators (" + op + "), which need torchvision's library: install Debian's " +
              "python3-torchvision, or set SALIENT_TORCHVISION_OPS to its _C*.so" +
              (std::getenv("SALIENT_TORCHVISION_OPS") ? " (SALIENT_TORCHVISION_OPS is set)" : "") + failures);
}

}  // namespace

Model::Model(const std::string& path, ModelOptions options) : path_(path), options_(std::move(options)) {
  check_regular_file(path, "model file");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw Error("cannot read model file '" + path + "'");
  }
  device_ = parse_device(options_.device);
  meta_ = options_.metadata_path.empty() ? ModelMetadata::for_model(path)
                                         : ModelMetadata::load(options_.metadata_path);
  if (options_.output.empty()) options_.output = meta_.explained_output;
  meta_.select_output(options_.output);
  if (!options_.id_column.empty()) meta_.id_column = options_.id_column;
  if (fs::path(path).extension() == ".onnx") {
    if (!device_.is_cpu()) throw Error("ONNX models run on the CPU through OpenCV DNN; --device must be cpu");
    backend_ = Backend::Onnx;
    input_names_ = {"input"};
    onnx_ = load_onnx(path);
    return;
  }
  try {
    try {
      module_ = torch::jit::load(path, device_);
    } catch (const std::exception& e) {
      // torchvision's operators (nms, roi_align: every torchvision detector) live in its own
      // library: loaded on demand, then the model again.
      if (std::string(e.what()).find("Unknown builtin op: torchvision::") == std::string::npos) throw;
      load_torchvision_ops(path, one_line(e));
      module_ = torch::jit::load(path, device_);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string why = one_line(e);
    // torch.save(model) or torch.save(model.state_dict()) writes a zip of pickles with no code
    // (no constants.pkl, no code/): the newcomer's commonest mistake, said with its fix.
    if (why.find("constants.pkl") != std::string::npos || why.find("code/") != std::string::npos)
      throw Error("'" + path + "' is a torch.save checkpoint (a pickled module or state_dict), not TorchScript: export it with "
                  "torch.jit.trace(model.eval(), example).save(...) or torch.jit.script(model.eval()).save(...)");
    throw Error("'" + path + "' is not a TorchScript model (" + why + ")");
  }
  prepare();
}

torch::jit::Module& Model::module() {
  if (backend_ == Backend::Onnx)
    throw Error("'" + path_ + "' is an ONNX model: this needs a TorchScript model (gradients or layers)");
  return module_;
}

Model::Model(torch::jit::Module module, ModelOptions options, ModelMetadata meta)
    : path_("<in-memory>"), module_(std::move(module)), options_(std::move(options)), meta_(std::move(meta)) {
  device_ = parse_device(options_.device);
  if (options_.output.empty()) options_.output = meta_.explained_output;
  meta_.select_output(options_.output);
  module_.to(device_);
  prepare();
}

namespace {

// A tensor must lie inside its storage: a model file whose storage records were cut short loads
// "fine" and then reads past the end of its buffers (garbage outputs, or a crash).
void check_storage(const std::string& path, const std::string& name, const torch::Tensor& t) {
  if (!t.defined() || t.numel() == 0 || !t.has_storage()) return;
  int64_t last = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * std::abs(t.stride(d));
  const uint64_t need = static_cast<uint64_t>(last + 1) * t.element_size();
  const uint64_t have = t.storage().nbytes();
  if (have < need)
    throw Error("model file '" + path + "' is corrupt: tensor '" + name + "' needs " + std::to_string(need) +
                " bytes, its storage holds " + std::to_string(have));
}

}  // namespace

void Model::prepare() {
  module_.eval();
  for (const auto& p : module_.named_parameters(/*recurse=*/true)) check_storage(path_, p.name, p.value);
  for (const auto& b : module_.named_buffers(/*recurse=*/true)) check_storage(path_, b.name, b.value);
  // Attributions need gradients with respect to the input only: parameters that do not require
  // gradients make the backward pass ~10% faster and leave input gradients bit-identical.
  for (auto p : module_.parameters()) p.set_requires_grad(false);
  if (!module_.find_method("forward"))
    throw Error("TorchScript model '" + path_ + "' has no forward method");
  if (!meta_.tokenizer.empty()) {
    const std::string where = "model metadata of '" + path_ + "'";
    tokenizer_ = std::make_shared<const WordPiece>(TokenizerConfig::from_json(nlohmann::json::parse(meta_.tokenizer), "", where));
  }
  input_names_.clear();  // read once: arguments() runs on every forward
  const auto& args = module_.get_method("forward").function().getSchema().arguments();
  // Less self; an argument with a default (`temperature: float = 1.0`, `mask: Optional[Tensor] =
  // None`, a detector's `targets`) is left to its default: it is not an input the user supplies.
  for (size_t i = 1; i < args.size() && !args[i].default_value(); ++i) input_names_.push_back(args[i].name());
  dict_argument_.clear();
  list_input_ = false;
  if (input_names_.size() == 1)
    if (const auto l = args[1].type()->cast<c10::ListType>())
      list_input_ = l->getElementType()->kind() == c10::TypeKind::TensorType;
  if (input_names_.size() == 1) {  // forward(self, x: Dict[str, Tensor]): the entries are the inputs
    if (const auto d = args[1].type()->cast<c10::DictType>()) {
      if (d->getKeyType()->kind() != c10::TypeKind::StringType || d->getValueType()->kind() != c10::TypeKind::TensorType)
        throw Error("the model's forward takes " + args[1].name() + ": " + d->annotation_str() +
                    "; Salient gives a dict input as Dict[str, Tensor] only");
      dict_argument_ = args[1].name();
    }
  }
}

void Model::set_input_names(std::vector<std::string> keys) {
  if (!dict_input()) throw Error("only a model whose forward takes a Dict[str, Tensor] has inputs named by the caller");
  if (keys.empty()) throw Error("a dict input needs at least one entry");
  std::set<std::string> seen;
  for (const auto& k : keys)
    if (!seen.insert(k).second) throw Error("dict input entry '" + k + "' is given twice");
  input_names_ = std::move(keys);
}

Model Model::with_module(torch::jit::Module module) const {
  Model m(std::move(module), options_, meta_);
  m.path_ = path_;
  if (dict_input() && input_names_ != std::vector<std::string>{dict_argument_}) m.input_names_ = input_names_;
  m.input_shapes_ = input_shapes_;
  m.input_dtypes_ = input_dtypes_;
  m.reduction_ = reduction_;
  m.output_function_ = output_function_;
  m.set_output_layer(output_layer_);
  if (dtype_ != torch::kFloat) m.to(dtype_);
  return m;
}

void Model::check_labels(int64_t columns) const {
  const auto n = static_cast<int64_t>(meta_.labels.size());
  if (n == 0 || n == columns) return;
  const std::string which = options_.output.empty() ? "the explained output" : "output '" + options_.output + "'";
  throw Error("the model's metadata has " + std::to_string(n) + " labels, but " + which + " has " +
              std::to_string(columns) + " columns (labels of another output? give per-output labels as "
              "\"labels\": {\"OUTPUT\": [...]})");
}

namespace {

// One line per output of a tuple/list/dict result: "0: Tensor [1, 64]" or "logits: Tensor [1, 10]".
std::vector<std::string> describe(const std::vector<std::pair<std::string, c10::IValue>>& items) {
  std::vector<std::string> out;
  for (const auto& [name, v] : items)
    out.push_back(name + ": " + (v.isTensor() ? "Tensor " + shape_str(v.toTensor().sizes()) : v.tagKind()));
  return out;
}

std::vector<std::pair<std::string, c10::IValue>> output_items(const c10::IValue& out) {
  std::vector<std::pair<std::string, c10::IValue>> items;
  if (out.isTuple() || out.isList()) {
    const auto v = out.isTuple() ? out.toTupleRef().elements().vec() : out.toListRef().vec();
    for (size_t i = 0; i < v.size(); ++i) items.emplace_back(std::to_string(i), v[i]);
  } else if (out.isGenericDict()) {
    for (const auto& kv : out.toGenericDict())
      items.emplace_back(kv.key().isString() ? kv.key().toStringRef() : kv.key().tagKind(), kv.value());
  }
  return items;
}

}  // namespace

std::vector<std::string> Model::describe_outputs(const torch::Tensor& batch) {
  if (backend_ == Backend::Onnx) return {"0: Tensor " + shape_str(run_raw(batch).toTensor().sizes())};
  torch::NoGradGuard no_grad;
  c10::IValue out;
  try {
    out = module_.forward(arguments(cast_input(batch)));
  } catch (const std::exception& e) {
    throw Error("the model failed on an input of shape " + shape_str(batch.sizes()) + ": " + one_line(e));
  }
  if (out.isTensor()) return {"0: Tensor " + shape_str(out.toTensor().sizes())};
  return describe(output_items(out));
}

torch::Tensor Model::select_output(const c10::IValue& out, bool reduce) const {
  if (output_function_ && reduce) {
    torch::Tensor t = output_function_(out);
    if (t.dim() == 1) t = t.unsqueeze(1);
    if (t.dim() != 2) throw Error("an output function returned shape " + shape_str(t.sizes()) + ", not [N, K]", ErrorKind::Internal);
    return t;
  }
  std::string sel = options_.output;
  torch::Tensor t;
  if (out.isTensor()) {
    if (!sel.empty() && sel != "0") throw Error("--output '" + sel + "' given, but the model returns a single tensor");
    t = out.toTensor();
  } else if (out.isTuple() || out.isList() || out.isGenericDict()) {
    const auto items = output_items(out);
    size_t tensors = 0;
    for (const auto& kv : items) tensors += kv.second.isTensor();
    if (tensors == 0) throw Error("the model returned no tensor among its outputs");
    // Labels given for one output name it (the metadata's choice); else one tensor is the choice.
    if (sel.empty() && meta_.output_labels.size() == 1) sel = meta_.output_labels.begin()->first;
    if (sel.empty() && tensors > 1) {
      std::string list;
      for (const auto& line : describe(items)) list += (list.empty() ? "" : "; ") + line;
      throw Error("the model returns " + std::to_string(items.size()) + " outputs (" + list +
                  "): choose the one to explain with --output NAME (or \"explained_output\" in its metadata)");
    }
    bool found = false;
    std::string names;
    for (const auto& [name, v] : items) {
      names += (names.empty() ? "" : ", ") + name;
      if (found) continue;
      if (sel.empty() ? v.isTensor() : name == sel) {
        if (!v.isTensor()) throw Error("model output " + sel + " is not a tensor (it is " + v.tagKind() + ")");
        t = v.toTensor();
        found = true;
      }
    }
    if (!found) throw Error("--output '" + sel + "' is not one of the model's outputs (" + names + ")");
  } else {
    throw Error("the model's output is neither a tensor nor a tuple/list/dict of tensors");
  }
  if (!reduce) return t;
  return reduce_output(t);
}

torch::Tensor Model::reduce_output(const torch::Tensor& selected) const {
  torch::Tensor t = selected;
  if (reduction_) {  // a function target: its value per input is what is explained
    t = reduction_(t);
    if (t.dim() == 1) t = t.unsqueeze(1);
    if (t.dim() != 2) throw Error("a target function returned shape " + shape_str(t.sizes()) + ", not [N, K]", ErrorKind::Internal);
    return t;
  }
  if (t.dim() == 1) t = t.unsqueeze(1);
  if (t.dim() != 2)
    throw Error("the explained output must be [N, K]; the model returned shape " + shape_str(t.sizes()) +
                (t.dim() == 4 ? " (a dense output: explain a region of it with --target region:CLASS[:MASK.npy])" : ""));
  check_labels(t.size(1));
  return t;
}


void Model::set_input_shapes(std::vector<std::vector<int64_t>> shapes) {
  if (shapes.size() > 1 && shapes.size() != input_count())
    throw Error("the model's forward takes " + std::to_string(input_count()) + " inputs, " + std::to_string(shapes.size()) + " were given");
  input_shapes_ = std::move(shapes);
  fast_.reset();
  mode_settled_ = false;
}

std::vector<torch::Tensor> Model::unpack(const torch::Tensor& x) const {
  if (!packed()) return {x};
  std::vector<int64_t> sizes;
  for (const auto& s : input_shapes_) sizes.push_back(c10::multiply_integers(s));
  torch::Tensor flat = x.reshape({x.size(0), -1});
  int64_t sum = 0;
  for (auto s : sizes) sum += s;
  if (flat.size(1) != sum)
    throw Error("a packed input has " + std::to_string(flat.size(1)) + " values per row, the model's inputs " + std::to_string(sum));
  std::vector<torch::Tensor> parts;
  int64_t at = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<int64_t> shape{x.size(0)};
    shape.insert(shape.end(), input_shapes_[i].begin(), input_shapes_[i].end());
    parts.push_back(flat.slice(1, at, at + sizes[i]).reshape(shape));
    at += sizes[i];
  }
  return parts;
}

std::vector<c10::IValue> Model::arguments(const torch::Tensor& x) const {
  if (tokenizer_ && tokenizer_->config().mask_input) {  // (ids, mask): the mask is 1 on every token but pad
    if (input_count() != 2)
      throw Error("the model's metadata says its inputs are ids,mask, but its forward takes " + std::to_string(input_count()));
    return {x, (x != tokenizer_->pad_id()).to(x.scalar_type())};
  }
  if (dict_input()) {  // the entries of one Dict[str, Tensor], by the names the caller gave
    if (input_names_ == std::vector<std::string>{dict_argument_})
      throw Error("the model's forward takes a dict of tensors (" + dict_argument_ +
                  ": Dict[str, Tensor]): give each entry as --input KEY=FILE.npy");
    const auto parts = unpack(x);
    if (parts.size() != input_names_.size())
      throw Error("a dict input of " + std::to_string(input_names_.size()) + " entries needs their shapes (set_input_shapes)");
    c10::Dict<std::string, at::Tensor> entries;
    for (size_t k = 0; k < parts.size(); ++k) {
      const bool integer = k < input_dtypes_.size() && c10::isIntegralType(input_dtypes_[k], /*includeBool=*/false);
      entries.insert(input_names_[k], integer ? parts[k].detach().round().to(input_dtypes_[k]) : parts[k]);
    }
    return {c10::IValue(entries)};
  }
  if (list_input_) return {c10::IValue(c10::List<at::Tensor>(x.unbind(0)))};
  if (const size_t k = input_count(); k != 1 && !packed()) {
    std::string names;
    for (const auto& n : input_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error("the model's forward takes " + std::to_string(k) + " inputs (" + names + "): give one --input .npy per input, " +
                "in that order (their rows are paired)");
  }
  std::vector<c10::IValue> args;
  size_t k = 0;
  for (auto& t : unpack(x)) {
    const bool integer = k < input_dtypes_.size() && c10::isIntegralType(input_dtypes_[k], /*includeBool=*/false);
    args.emplace_back(integer ? t.detach().round().to(input_dtypes_[k]) : std::move(t));
    ++k;
  }
  return args;
}

std::vector<c10::IValue> Model::default_arguments() const {
  std::vector<c10::IValue> out;
  if (backend_ == Backend::Onnx) return out;
  const auto& args = module_.get_method("forward").function().getSchema().arguments();
  for (size_t i = 1 + (dict_input() ? 1 : input_names_.size()); i < args.size(); ++i)
    if (args[i].default_value()) out.push_back(*args[i].default_value());
  return out;
}

torch::Tensor Model::run_module(torch::jit::Module& m, const torch::Tensor& x, bool check_batch) {
  std::vector<c10::IValue> args = arguments(x);
  c10::IValue out;
  try {
    out = m.forward(args);
  } catch (const std::exception& e) {
    // A model that rejects the input (shape, dtype) is the user's input problem, said in one line.
    std::string want;
    if (!meta_.input_shape.empty()) want = ", the model's metadata expects [N," + shape_str(meta_.input_shape).substr(1);
    std::string given = "an input of shape " + shape_str(x.sizes()) + " (" + std::string(c10::toString(x.scalar_type())) + ")";
    if (packed() || dict_input()) {  // each input by its name and shape, never the packed [N, F1 + F2 + ...]
      given = dict_input() ? "dict entries " : "inputs ";
      const std::vector<torch::Tensor> parts = unpack(x);
      for (size_t k = 0; k < parts.size() && k < input_names_.size(); ++k) {
        const bool integer = k < input_dtypes_.size() && c10::isIntegralType(input_dtypes_[k], /*includeBool=*/false);
        given += (k ? ", " : "") + input_names_[k] + " " + shape_str(parts[k].sizes()) + " (" +
                 std::string(c10::toString(integer ? input_dtypes_[k] : parts[k].scalar_type())) + ")";
      }
    }
    throw Error("the model failed on " + given + want + ": " + one_line(e));
  }
  torch::Tensor t = select_output(out);
  if (check_batch && t.size(0) != x.size(0))
    throw Error("the model's output has batch size " + std::to_string(t.size(0)) + " for an input batch of " + std::to_string(x.size(0)));
  return t;
}

torch::Tensor Model::forward(const torch::Tensor& batch) {
  if (backend_ == Backend::Onnx)
    throw Error("'" + path_ + "' is an ONNX model, which gives no gradients: use a black-box method (see `salient methods`)");
  if (!embedding_layer_.empty()) return embedding_output(batch);
  if (!output_layer_.empty()) return layer_output(cast_input(batch));
  return run_module(module_, cast_input(batch), true);
}

const WordPiece& Model::tokenizer() const {
  if (!tokenizer_) throw Error("'" + path_ + "' is not a text model: its metadata has no \"tokenizer\"");
  return *tokenizer_;
}

torch::Tensor Model::cast_input(const torch::Tensor& x) const {
  if (!tokenizer_) return x.to(device_, dtype_);
  if (embedding_ids_.defined() && x.is_same(embedding_ids_)) return x;  // checked once, in set_embedding_input
  if (x.is_floating_point() && !x.equal(x.round()))
    throw Error("a text model's input is token ids, whole numbers; got fractional values");
  torch::Tensor ids = x.to(device_, torch::kLong);
  if (!ids.numel()) return ids;
  int64_t lo = 0, hi = 0;
  if (ids.is_cpu() && ids.is_contiguous()) {  // a loop over the ids, not two reductions' dispatch
    const int64_t* p = ids.data_ptr<int64_t>();
    lo = hi = p[0];
    for (int64_t k = 1; k < ids.numel(); ++k) {
      lo = std::min(lo, p[k]);
      hi = std::max(hi, p[k]);
    }
  } else {
    lo = ids.min().item<int64_t>();
    hi = ids.max().item<int64_t>();
  }
  if (lo < 0 || hi >= tokenizer_->size())
    throw Error("token ids must lie in [0, " + std::to_string(tokenizer_->size()) + "), the vocabulary's size; got " +
                std::to_string(lo) + ".." + std::to_string(hi));
  return ids;
}

torch::Tensor Model::pool_bag(const torch::Tensor& e, const torch::Tensor& ids) const {
  const Bag& b = *bag_;
  if (b.padding < 0) return b.mode == "sum" ? e.sum(1) : b.mode == "mean" ? e.mean(1) : e.amax(1);
  const torch::Tensor keep = (ids != b.padding).unsqueeze(2);  // [1 or M, L, 1]
  if (b.mode == "max") {  // an all-padding bag is zeros, as EmbeddingBag's
    const torch::Tensor m = e.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity()).amax(1);
    return torch::where(keep.any(1), m, torch::zeros_like(m));
  }
  const torch::Tensor k = keep.to(e.scalar_type()), sum = (e * k).sum(1);
  return b.mode == "sum" ? sum : sum / k.sum(1).clamp_min(1.0);
}

void Model::set_embedding_input(const std::string& layer, const torch::Tensor& ids) {
  token_baselines_.clear();
  if (layer.empty()) {
    embedding_layer_.clear();
    embedding_ids_ = torch::Tensor();
    return;
  }
  if (!tokenizer_) throw Error("attribution at an embedding layer needs a text model (metadata \"tokenizer\")");
  if (!embedding_capture_ || embedding_capture_->paths()[0] != layer) {
    auto capture = std::make_shared<LayerCapture>(*this, std::vector<std::string>{layer});
    std::optional<Bag> bag = embedding_bag(module_, layer, *capture);
    embedding_capture_ = std::move(capture);
    bag_ = std::move(bag);
    embedding_module_.reset();
    embedding_direct_ = -1;
  }
  embedding_ids_ = cast_input(ids.dim() == 1 ? ids.unsqueeze(0) : ids);
  if (embedding_ids_.dim() != 2 || embedding_ids_.size(0) != 1)
    throw Error("embedding mode takes the ids of one input [1, L]", ErrorKind::Internal);
  embedding_layer_ = layer;
}

torch::Tensor Model::embed(const torch::Tensor& ids) {
  if (!embedding_capture_) throw Error("embed() needs an embedding layer (set_embedding_input)", ErrorKind::Internal);
  torch::NoGradGuard no_grad;
  if (bag_) {  // the tokens' own vectors, which the bag pools
    const torch::Tensor x = cast_input(ids);
    torch::Tensor e = torch::embedding(bag_->weight, x);
    if (!bag_->checked) {  // on these ids and, with padding_idx, a copy whose last token is padding
      torch::Tensor probe = x;
      if (bag_->padding >= 0) {
        torch::Tensor padded = x.slice(0, 0, 1).clone();
        padded.select(1, padded.size(1) - 1).fill_(bag_->padding);
        probe = torch::cat({x, padded});
      }
      const torch::Tensor own = embedding_capture_->activation(probe), pooled = pool_bag(torch::embedding(bag_->weight, probe), probe);
      if (own.sizes() != pooled.sizes() || !torch::allclose(own.to(pooled.dtype()), pooled, 1e-4, 1e-5))
        throw Error("the EmbeddingBag '" + embedding_capture_->paths()[0] + "' (mode " + bag_->mode + ") gave other values than the " +
                    bag_->mode + " of its tokens' vectors: its tokens cannot be attributed here; give --layer another module");
      bag_->checked = true;
    }
    return e;
  }
  if (embedding_direct_ == 1) return embedding_module_->forward({cast_input(ids)}).toTensor();
  // The capture runs the module itself on the ids (not forward(), which embedding mode redirects).
  const torch::Tensor e = embedding_capture_->activation(ids);
  if (e.dim() != 3 || e.size(0) != ids.size(0) || e.size(1) != ids.size(-1))
    throw Error("layer '" + embedding_capture_->paths()[0] + "' gave shape " + shape_str(e.sizes()) + " for ids " +
                shape_str(ids.sizes()) + ": an embedding layer gives one vector per token [N, L, D]");
  if (embedding_direct_ < 0) {  // the layer alone on the ids is a lookup, not a pass of the whole model
    embedding_direct_ = 0;
    try {
      if (embedding_capture_->called_on_input(0)) {
        torch::jit::Module m = submodule(module_, embedding_capture_->paths()[0]);
        const torch::Tensor direct = m.forward({cast_input(ids)}).toTensor();
        if (direct.sizes() == e.sizes() && direct.equal(e)) {
          embedding_module_ = m;
          embedding_direct_ = 1;
        }
      }
    } catch (const std::exception&) {  // not callable on the ids alone: the capture stays
    }
  }
  return e.detach();
}

torch::Tensor Model::token_baseline(const std::string& token) {
  if (embedding_layer_.empty()) throw Error("baseline '" + token + "' is a text baseline: it needs a text model's embeddings");
  const WordPiece& t = *tokenizer_;
  const int64_t id = token == "pad" ? t.pad_id() : token == "unk" ? t.unk_id() : token == "mask" ? t.mask_id() : -2;
  if (id == -2) throw Error("unknown text baseline '" + token + "'", ErrorKind::Internal);
  if (id < 0) throw Error("baseline '" + token + "': the model's tokenizer has no " + token + " token");
  if (auto it = token_baselines_.find(token); it != token_baselines_.end()) return it->second;
  // Padding stays padding; cls and sep are kept (the usual choice). A loop over L ids, not tensor ops.
  const torch::Tensor from = embedding_ids_.to(torch::kCPU).contiguous();
  torch::Tensor ids = torch::empty(from.sizes(), from.options());
  const int64_t* q = from.data_ptr<int64_t>();
  int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t k = 0; k < ids.numel(); ++k)
    p[k] = q[k] != t.pad_id() && q[k] != t.cls_id() && q[k] != t.sep_id() ? id : q[k];
  return token_baselines_[token] = embed(ids.to(device_))[0];
}

std::string Model::default_embedding_layer() {
  std::vector<std::string> found;
  std::string bag;
  for (const auto& item : module().named_modules()) {
    if (item.name.empty()) continue;
    auto qn = item.value.type()->name();
    const std::string type = qn ? qn->name() : "";
    if (type == "Embedding") found.push_back(item.name);
    if (type == "EmbeddingBag" && bag.empty()) bag = item.name;
  }
  if (found.size() > 1) {  // token and position embeddings: the one that reads the ids themselves
    std::string names;
    for (const auto& f : found) {
      try {
        if (LayerCapture(*this, {f}).called_on_input(0)) return f;
      } catch (const Error&) {
      }
      names += (names.empty() ? "" : ", ") + f;
    }
    throw Error("the model has several nn.Embedding modules (" + names + ") and none is called on the ids themselves: "
                "give --layer the token embedding");
  }
  if (found.size() == 1) return found[0];
  if (!bag.empty()) return bag;
  throw Error("the model has no nn.Embedding module: give --layer the module whose output is the token embeddings [N, L, D] "
              "(see `salient layers`)");
}

torch::Tensor Model::embedding_output(const torch::Tensor& x) {
  torch::Tensor e = x.to(device_, dtype_);
  if (e.dim() != 3 || e.size(1) != embedding_ids_.size(1))
    throw Error("in embedding mode the input is embeddings [M, L, D] with L = " + std::to_string(embedding_ids_.size(1)) +
                "; got " + shape_str(e.sizes()), ErrorKind::Internal);
  torch::Tensor t = embedding_capture_->run_replacing(0, embedding_ids_, bag_ ? pool_bag(e, embedding_ids_) : e);
  if (t.size(0) != e.size(0))
    throw Error("the model's output has batch size " + std::to_string(t.size(0)) + " for " + std::to_string(e.size(0)) + " embeddings");
  return t;
}

void Model::set_output_layer(const std::string& path) {
  if (path == output_layer_) return;
  if (!path.empty() && backend_ == Backend::Onnx)
    throw Error("an inner-neuron target (layer:...) needs a TorchScript model; '" + path_ + "' is ONNX");
  layer_capture_ = path.empty() ? nullptr : std::make_shared<LayerCapture>(*this, std::vector<std::string>{path});
  output_layer_ = path;
}

torch::Tensor Model::layer_output(const torch::Tensor& x) {
  torch::Tensor a = layer_capture_->activation(x);
  torch::Tensor t = reduction_ ? reduction_(a) : a.flatten(1);
  if (t.dim() == 1) t = t.unsqueeze(1);
  if (t.dim() != 2 || t.size(0) != x.size(0))
    throw Error("layer '" + output_layer_ + "' gave shape " + shape_str(t.sizes()) + " for a batch of " + std::to_string(x.size(0)));
  return t;
}

void Model::choose_forward_copy(const torch::Tensor& x) {
  mode_settled_ = true;
  mode_ = ForwardMode{};
  mode_.check = nlohmann::json::object();
  if (!options_.freeze) {
    mode_.check["note"] = "--no-freeze";
    return;
  }
  // A frozen or optimised copy must prove itself on this batch (and on its first row alone, since a
  // wrong rewrite can depend on the batch size) against the plain module: LibTorch 1.13's
  // optimize_for_inference miscomputes some blocks (MobileNetV3-small's features.7).
  std::vector<torch::Tensor> probes = {x};
  if (x.size(0) > 1) probes.push_back(x.slice(0, 0, 1));
  std::vector<torch::Tensor> refs;
  for (const auto& p : probes) refs.push_back(run_module(module_, p, true).to(torch::kDouble));
  const std::vector<std::pair<std::string, bool>> candidates = {{"optimised", true}, {"frozen", false}};
  for (const auto& [name, optimise] : candidates) {
    torch::jit::Module copy;
    try {
      copy = torch::jit::freeze(module_.clone());
      if (optimise) copy = torch::jit::optimize_for_inference(copy);
    } catch (const std::exception& e) {
      mode_.check[name] = "cannot be built: " + one_line(e);
      continue;
    }
    double worst = 0;
    bool same_top = true;
    try {
      for (size_t i = 0; i < probes.size(); ++i) {
        torch::Tensor got = run_module(copy, probes[i], true).to(torch::kDouble);
        const double scale = std::max(refs[i].abs().max().item<double>(), 1e-12);
        const double diff = (got - refs[i]).abs().max().item<double>() / scale;
        worst = std::isfinite(diff) ? std::max(worst, diff) : INFINITY;
        same_top = same_top && got.argmax(1).equal(refs[i].argmax(1));
      }
    } catch (const Error& e) {
      mode_.check[name] = std::string("fails where the plain module runs: ") + e.what();
      continue;
    }
    mode_.check[name] = worst;
    if (worst <= kForwardCopyTolerance && same_top) {
      mode_.mode = name;
      fast_ = std::move(copy);
      return;
    }
  }
}

torch::Tensor Model::predict(const torch::Tensor& batch) {
  torch::NoGradGuard no_grad;
  if (backend_ == Backend::Onnx) {
    mode_.mode = "onnx";
    torch::Tensor out = onnx_forward(*onnx_, batch.detach().to(torch::kCPU, torch::kFloat).contiguous());
    if (output_function_) out = output_function_(c10::IValue(out));
    else if (reduction_) out = reduction_(out);
    if (out.dim() == 1) out = out.unsqueeze(1);
    if (out.dim() != 2 || out.size(0) != batch.size(0))
      throw Error("the ONNX model returned shape " + shape_str(out.sizes()) + " for a batch of " + std::to_string(batch.size(0)));
    if (!reduction_ && !output_function_) check_labels(out.size(1));
    return out;
  }
  if (!embedding_layer_.empty()) return embedding_output(batch);
  torch::Tensor x = cast_input(batch);
  if (!output_layer_.empty()) return layer_output(x);  // the plain module: its layers are the user's
  if (!mode_settled_) choose_forward_copy(x);
  return fast_ ? run_module(*fast_, x, true) : run_module(module_, x, true);
}

c10::IValue Model::run_raw(const torch::Tensor& batch) {
  torch::NoGradGuard no_grad;
  if (backend_ == Backend::Onnx) return onnx_forward(*onnx_, batch.detach().to(torch::kCPU, torch::kFloat).contiguous());
  const torch::Tensor x = cast_input(batch);
  try {
    return module_.forward(arguments(x));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("the model failed on an input of shape " + shape_str(x.sizes()) + ": " + one_line(e));
  }
}

int64_t Model::parameter_count() const {
  if (backend_ == Backend::Onnx) return 0;
  int64_t n = 0;
  for (const auto& p : module_.parameters()) n += p.numel();
  return n;
}

void Model::to(torch::Dtype dtype) {
  if (backend_ == Backend::Onnx) throw Error("ONNX models run in float32 only");
  fast_.reset();
  mode_settled_ = false;
  module_.to(dtype);
  dtype_ = dtype;
  for (auto p : module_.parameters()) p.set_requires_grad(false);
}

torch::Tensor output_probabilities(const ModelMetadata& meta, const torch::Tensor& outputs) {
  if (meta.output == "probabilities" || meta.regression()) return outputs;
  return outputs.size(1) == 1 || meta.multi_label ? outputs.sigmoid() : outputs.softmax(1);
}

void set_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

}  // namespace salient
