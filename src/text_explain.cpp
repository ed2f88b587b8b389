#include "salient/text_explain.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <numeric>
#include <set>
#include <sstream>

#include <opencv2/freetype.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/fsutil.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace fs = std::filesystem;

std::vector<TextInput> load_text_inputs(const std::vector<std::string>& texts, const std::vector<std::string>& files) {
  std::vector<TextInput> out;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string where = "--text " + std::to_string(i + 1);
    if (texts[i].find_first_not_of(" \t\r\n") == std::string::npos) throw Error(where + " is empty: nothing to explain");
    out.push_back({"text-" + std::to_string(i + 1), where, texts[i], {}});
  }
  for (const auto& f : files) {
    const std::string ext = fs::path(f).extension().string(), stem = fs::path(f).stem().string();
    if (ext == ".txt") {
      check_regular_file(f, "text file");
      std::istringstream in(read_file(f));
      int64_t n = 0;
      for (std::string line; std::getline(in, line);) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos)
          throw Error("'" + f + "' line " + std::to_string(n) + " is empty: one example a line, no blank lines");
        out.push_back({stem + "-" + std::to_string(n), f + ":" + std::to_string(n), line, {}});
      }
      if (n == 0) throw Error("text file '" + f + "' is empty");
    } else if (ext == ".npy") {
      torch::Tensor ids = read_npy_any(f);
      if (ids.is_floating_point() || ids.scalar_type() == torch::kBool)
        throw Error("'" + f + "' holds " + std::string(c10::toString(ids.scalar_type())) + " values; a text model's ids are integers (int64)");
      if (ids.dim() == 1) ids = ids.unsqueeze(0);
      if (ids.dim() != 2 || ids.size(1) == 0) throw Error("'" + f + "' must hold token ids [N, L] or [L]; got " + c10::str(ids.sizes()));
      ids = ids.to(torch::kLong);
      for (int64_t r = 0; r < ids.size(0); ++r)
        out.push_back({stem + "-" + std::to_string(r), f + ":" + std::to_string(r), "", ids[r].clone()});
    } else {
      throw Error("input '" + f + "' of a text model must be a .txt file (one example a line) or an .npy of token ids; "
                  "or give the text with --text");
    }
  }
  if (out.empty()) throw Error("no input: give --text \"...\" or --input FILE.txt");
  return out;
}

const std::vector<std::string>& text_methods() {
  static const std::vector<std::string> names = {"saliency", "input-x-gradient", "integrated-gradients", "smoothgrad",
                                                 "occlusion", "lime", "kernel-shap", "feature-ablation", "shapley-sampling"};
  return names;
}

TokenScores token_scores(const torch::Tensor& map) {
  const torch::Tensor m = map.to(torch::kDouble);
  const torch::Tensor s = m.sum(-1).contiguous(), n = m.norm(2, -1).contiguous();
  return {std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel()),
          std::vector<double>(n.data_ptr<double>(), n.data_ptr<double>() + n.numel())};
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

TokenView token_view(const Tokenized& t, const std::vector<double>& scores) {
  TokenView v;
  v.tokens = t.tokens;
  v.shown = t.shown;
  v.scores = scores;
  for (size_t k = 0; k < t.tokens.size(); ++k) {
    const int64_t w = t.word[k];
    const bool first_of_word = w >= 0 && (k == 0 || t.word[k - 1] != w);
    // A space before a word the text had one before, and around cls/sep.
    v.space.push_back(k > 0 && (w < 0 || t.word[k - 1] < 0 || (first_of_word && t.space_before[static_cast<size_t>(w)])));
  }
  return v;
}

namespace {

double max_abs(const std::vector<double>& s) {
  double m = 0;
  for (double x : s) m = std::max(m, std::abs(x));
  return m;
}

std::string number(double x, int digits = 4) {
  std::ostringstream s;
  s << std::setprecision(digits) << x;
  return s.str();
}

}  // namespace

std::string token_html(const TokenView& v) {
  const double m = max_abs(v.scores);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << html_escape(v.title) << "</title>\n"
    << "<style>body{font:16px/1.9 sans-serif;margin:2em;max-width:60em;color:#222}"
       ".t{padding:2px 1px;border-radius:3px}.s{color:#888;font-size:80%}"
       ".legend span{display:inline-block;width:5em;text-align:center;margin-right:2px}"
       "p.cap{color:#444}</style></head><body>\n";
  h << "<h1>" << html_escape(v.title) << "</h1>\n<p class=\"cap\">" << html_escape(v.caption)
    << " &middot; a token's score is its map summed over the embedding (hover a token for it)</p>\n<p class=\"text\">";
  for (size_t k = 0; k < v.tokens.size(); ++k) {
    if (v.shown[k].empty() && k > 0) continue;  // an unknown word shows whole on its first token
    const double a = m > 0 ? std::min(1.0, std::abs(v.scores[k]) / m) : 0.0;
    const char* rgb = v.scores[k] >= 0 ? "0,160,60" : "220,30,30";
    const bool special = v.shown[k] == v.tokens[k] && v.tokens[k].size() > 2 && v.tokens[k].front() == '[' && v.tokens[k].back() == ']';
    if (v.space[k]) h << ' ';
    h << "<span class=\"t" << (special ? " s" : "") << "\" style=\"background:rgba(" << rgb << "," << number(a, 3)
      << ")\" title=\"" << html_escape(v.tokens[k]) << ": " << number(v.scores[k]) << "\">" << html_escape(v.shown[k]) << "</span>";
  }
  h << "</p>\n<p class=\"legend\">score: <span style=\"background:rgba(220,30,30,1)\">-" << html_escape(number(m, 3))
    << "</span><span style=\"background:rgba(220,30,30,0.4)\">&minus;</span><span>0</span>"
       "<span style=\"background:rgba(0,160,60,0.4)\">+</span><span style=\"background:rgba(0,160,60,1)\">+"
    << html_escape(number(m, 3)) << "</span> &nbsp;(green: for the explained class; red: against it; strength |score| / max)</p>\n"
    << "</body></html>\n";
  return h.str();
}

namespace {

// DejaVu Sans when it is installed (every script the tokenizer splits), else OpenCV's Hershey font
// (ASCII; other characters become '?').
struct Font {
  cv::Ptr<cv::freetype::FreeType2> ft;
  Font() {
    for (const char* p : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"}) {
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) continue;
      try {
        ft = cv::freetype::createFreeType2();
        ft->loadFontData(p, 0);
        return;
      } catch (const cv::Exception&) {
        ft.release();
      }
    }
  }
  static std::string ascii(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) out += static_cast<char>(c);
      else if ((c & 0xC0) != 0x80) out += '?';
    }
    return out;
  }
  cv::Size size(const std::string& s, int height) const {
    int base = 0;
    if (ft) return ft->getTextSize(s, height, -1, &base);
    return cv::getTextSize(ascii(s), cv::FONT_HERSHEY_SIMPLEX, height / 30.0, 1, &base);
  }
  void put(cv::Mat& img, const std::string& s, cv::Point at, int height, cv::Scalar color) const {
    if (ft) ft->putText(img, s, at, height, color, -1, cv::LINE_AA, false);
    else cv::putText(img, ascii(s), at + cv::Point(0, height * 3 / 4), cv::FONT_HERSHEY_SIMPLEX, height / 30.0, color, 1, cv::LINE_AA);
  }
};

}  // namespace

cv::Mat token_image(const TokenView& v, int width) {
  static const Font font;
  const int h = 22, line = 34, margin = 14, space = 6;
  const double m = max_abs(v.scores);
  struct Placed {
    cv::Rect box;
    size_t k;
  };
  std::vector<Placed> placed;
  int x = margin, y = margin + 2 * line;
  for (size_t k = 0; k < v.tokens.size(); ++k) {
    if (v.shown[k].empty() && k > 0) continue;
    const cv::Size s = font.size(v.shown[k], h);
    if (v.space[k]) x += space;
    if (x + s.width > width - margin && x > margin) {
      x = margin;
      y += line;
    }
    placed.push_back({cv::Rect(x, y, s.width + 2, line - 6), k});
    x += s.width + 2;
  }
  cv::Mat img(y + line + margin + line, width, CV_8UC3, cv::Scalar(255, 255, 255));
  font.put(img, v.title, {margin, margin}, h, {0, 0, 0});
  font.put(img, v.caption, {margin, margin + line}, h - 4, {80, 80, 80});
  for (const auto& p : placed) {
    const double a = m > 0 ? std::min(1.0, std::abs(v.scores[p.k]) / m) : 0.0;
    const cv::Vec3d tone = v.scores[p.k] >= 0 ? cv::Vec3d(60, 160, 0) : cv::Vec3d(30, 30, 220);  // BGR
    const cv::Scalar bg(255 + a * (tone[0] - 255), 255 + a * (tone[1] - 255), 255 + a * (tone[2] - 255));
    cv::rectangle(img, p.box, bg, cv::FILLED);
    font.put(img, v.shown[p.k], {p.box.x + 1, p.box.y + 2}, h, {0, 0, 0});
  }
  // Legend: red (against) .. white .. green (for).
  const int ly = y + line + 6, lw = 240;
  for (int i = 0; i < lw; ++i) {
    const double t = 2.0 * i / (lw - 1) - 1.0, a = std::abs(t);
    const cv::Vec3d tone = t >= 0 ? cv::Vec3d(60, 160, 0) : cv::Vec3d(30, 30, 220);
    cv::line(img, {margin + i, ly}, {margin + i, ly + 14}, cv::Scalar(255 + a * (tone[0] - 255), 255 + a * (tone[1] - 255), 255 + a * (tone[2] - 255)));
  }
  const std::string scale = "-" + number(m, 3) + "   0   +" + number(m, 3);
  font.put(img, scale, {margin + lw + 10, ly - 4}, 16, {60, 60, 60});
  // As wide as what is drawn: a short text makes a small picture.
  int right = margin + lw + 10 + font.size(scale, 16).width;
  for (const auto& p : placed) right = std::max(right, p.box.x + p.box.width);
  right = std::max({right, margin + font.size(v.title, h).width, margin + font.size(v.caption, h - 4).width});
  return img.colRange(0, std::min(width, right + margin)).clone();
}

namespace {

std::string percent(double p) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << 100.0 * p << "%";
  return s.str();
}

// The ids as tokens (an .npy input): each token shown as the vocabulary has it.
Tokenized from_ids(const WordPiece& tok, const torch::Tensor& ids) {
  Tokenized t;
  const torch::Tensor c = ids.contiguous();
  for (int64_t k = 0; k < c.numel(); ++k) {
    const int64_t id = c.data_ptr<int64_t>()[k];
    if (id < 0 || id >= tok.size())
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(tok.size()) + ")");
    std::string token = tok.token(id);
    t.tokens.push_back(token);
    t.ids.push_back(id);
    t.word.push_back(static_cast<int64_t>(t.words.size()));
    t.words.push_back(token);
    t.space_before.push_back(true);
    t.shown.push_back(token.rfind("##", 0) == 0 ? token.substr(2) : token);
  }
  return t;
}

}  // namespace

void check_text_methods(const std::vector<std::string>& methods) {
  for (const auto& name : methods)
    if (std::find(text_methods().begin(), text_methods().end(), name) == text_methods().end()) {
      std::string list;
      for (const auto& n : text_methods()) list += (list.empty() ? "" : ", ") + n;
      throw Error("method '" + name + "' does not apply to a text model (its input is token ids; attributions are read at the "
                  "embeddings): use " + list);
    }
}

std::string check_text_request(Model& model, const ExplainRequest& request) {
  model.tokenizer();  // a text model
  check_text_methods(request.methods);
  if (request.target.kind() == Target::Kind::Function || !request.target.layer().empty())
    throw Error("target '" + request.target.to_string() + "': a text model explains classes (top, top-K, an index or a label)");
  return request.embedding_layer.empty() ? model.default_embedding_layer() : request.embedding_layer;
}

Tokenized tokenize_text_input(const WordPiece& tok, const TextInput& in) {
  // Bytes that are not UTF-8 (a Latin-1 file, a cut sequence) are refused before anything is
  // written: they would tokenize as nothing and then break the record.
  if (!in.ids.defined())
    if (const size_t at = invalid_utf8_at(in.text); at != std::string::npos)
      throw Error(in.source + ": the text is not valid UTF-8 (byte " + std::to_string(at) + " of it); convert it, e.g. iconv -f latin1 -t utf-8");
  try {
    return in.ids.defined() ? from_ids(tok, in.ids) : tok.encode(in.text);  // an empty text is an error there
  } catch (const Error& e) {
    throw Error(in.source + ": " + e.what());
  }
}

torch::Tensor sample_text_ids(const WordPiece& t) {
  std::vector<int64_t> ids(8, t.unk_id() >= 0 ? t.unk_id() : t.pad_id());
  if (t.cls_id() >= 0) ids.front() = t.cls_id();
  if (t.sep_id() >= 0) ids.back() = t.sep_id();
  return torch::tensor(ids, torch::kLong).unsqueeze(0);
}

TextExplained explain_text_input(Model& model, const TextInput& in, const Tokenized& t, const ExplainRequest& request,
                                 MethodList& methods, const std::string& layer, std::map<std::string, Error>& failed_once,
                                 size_t i, size_t count) {
  const WordPiece& tok = model.tokenizer();
  const ModelMetadata& meta = model.metadata();
  const torch::Tensor ids = torch::tensor(t.ids, torch::kLong).unsqueeze(0);
  const torch::Tensor logits = model.predict(ids).to(torch::kCPU, torch::kDouble);
  if (!torch::isfinite(logits).all().item<bool>())
    throw Error("the model's output for " + in.source + " is not finite (NaN or Inf): nothing to explain");
  const torch::Tensor probs = output_probabilities(meta, logits);
  const std::vector<int64_t> targets = request.target.resolve(logits, probs)[0];
  nlohmann::json j;
  j["model"] = model.path();
  j["input"] = in.source;
  j["stem"] = in.stem;
  if (!in.text.empty() && !t.truncated) {
    j["text"] = in.text;
  } else if (!in.text.empty()) {  // only what is explained: a 50 MB line of which 32 tokens are explained is not kept whole
    int64_t last = -1;
    for (int64_t w : t.word) last = std::max(last, w);
    std::string kept;
    for (int64_t w = 0; w <= last; ++w) kept += (w > 0 && t.space_before[static_cast<size_t>(w)] ? " " : "") + t.words[static_cast<size_t>(w)];
    j["text"] = kept;
    j["text_cut"] = true;
  }
  j["tokens"] = t.tokens;
  j["ids"] = t.ids;
  j["words"] = t.words;
  j["token_word"] = t.word;
  j["embedding_layer"] = layer;
  ExplainedInput e;
  e.stem = in.stem;
  if (t.truncated) {
    e.warnings.push_back("the text has more than " + std::to_string(tok.config().max_length) +
                         " tokens (the model's max_length): its tail was cut off and is not explained");
    j["warnings"] = e.warnings;
  }
  const int64_t top = std::min<int64_t>(request.top_predictions, logits.size(1));
  const torch::Tensor order = std::get<1>(probs[0].topk(top));
  nlohmann::json preds = nlohmann::json::array();
  for (int64_t p = 0; p < top; ++p) {
    const int64_t c = order[p].item<int64_t>();
    e.predicted.push_back(c);
    preds.push_back({{"class", c}, {"label", meta.label(c)}, {"probability", probs[0][c].item<double>()},
                     {"logit", logits[0][c].item<double>()}});
  }
  j["predictions"] = preds;
  j["target"] = request.target.to_string();
  j["explained"] = nlohmann::json::array();
  const bool several = request.target.several() || targets.size() > 1;
  std::map<std::string, std::string> files;  // name -> bytes, written after the record is complete
  nlohmann::json failed = nlohmann::json::object();
  EmbeddingScope scope(model, layer, ids);
  const torch::Tensor emb = model.embed(ids);
  // An op without a derivative (a transformer traced under torch.no_grad()): the gradient methods
  // are refused by name, the black-box ones still run.
  for (const auto& [name, why] : refused_for_gradients(model, emb, request.methods, methods)) {
    failed[name] = why;
    failed_once.emplace(name, Error(why));
  }
  for (const int64_t c : targets) {
    nlohmann::json tj{{"class", c}, {"label", meta.label(c)}, {"probability", probs[0][c].item<double>()},
                      {"methods", nlohmann::json::object()}};
    for (size_t m = 0; m < methods.size(); ++m) {
      const std::string& name = request.methods[m];
      if (failed.contains(name)) continue;
      try {
        if (request.progress)
          methods[m]->set_progress([&](double f) { request.progress(name, (static_cast<double>(i) + f) / static_cast<double>(count)); });
        const Attribution a = methods[m]->attribute(model, emb, torch::tensor({c}, torch::kLong));
        methods[m]->set_progress({});
        const TokenScores s = token_scores(a.map[0]);
        nlohmann::json diag = nlohmann::json::object();
        for (auto it = a.diagnostics.begin(); it != a.diagnostics.end(); ++it)
          diag[it.key()] = it.value().is_array() && it.value().size() == 1 ? it.value()[0] : it.value();
        if (diag.contains("warning") && diag["warning"].is_string()) {  // named by its method once
          const std::string w = diag["warning"].get<std::string>();
          e.warnings.push_back(w.rfind(name + ": ", 0) == 0 ? w : name + ": " + w);
        }
        const std::string base = several ? name + "_c" + std::to_string(c) : name;
        TokenView v = token_view(t, s.score);
        v.title = methods[m]->info().title + " -- " + meta.label(c);
        v.caption = "predicted " + meta.label(e.predicted[0]) + " " + percent(probs[0][e.predicted[0]].item<double>()) +
                    "; explained " + meta.label(c) + " " + percent(probs[0][c].item<double>());
        files[base + ".html"] = token_html(v);
        std::vector<uchar> png;
        cv::imencode(".png", token_image(v), png);
        files[base + ".png"] = std::string(png.begin(), png.end());
        files[base + ".npy"] = encode_npy(torch::tensor(s.score, torch::kDouble).to(torch::kFloat));
        tj["methods"][name] = {{"params", a.params}, {"seconds", a.seconds}, {"score", logits[0][c].item<double>()},
                               {"scores", s.score}, {"l2", s.l2}, {"sum", std::accumulate(s.score.begin(), s.score.end(), 0.0)},
                               {"diagnostics", diag}, {"html", base + ".html"}, {"png", base + ".png"}, {"npy", base + ".npy"}};
      } catch (const Cancelled&) {
        throw;
      } catch (const Error& err) {
        methods[m]->set_progress({});
        failed[name] = name + ": " + err.what();
        failed_once.emplace(name, Error(name + ": " + err.what(), err.kind()));
      } catch (const std::exception& err) {  // LibTorch's own: the others' work is still kept
        methods[m]->set_progress({});
        failed[name] = name + " failed: " + one_line(err);
        failed_once.emplace(name, Error(name + " failed: " + one_line(err), ErrorKind::Internal));
      }
    }
    j["explained"].push_back(tj);
  }
  if (!failed.empty()) j["failed"] = failed;
  e.json = std::move(j);
  return {std::move(e), std::move(files)};
}

std::vector<ExplainedInput> explain_text(Model& model, const std::vector<TextInput>& inputs, const ExplainRequest& request,
                                         MethodList& methods, std::vector<Error>* failures) {
  const std::string layer = check_text_request(model, request);
  // Everything is tokenized, and every id checked, before the first file is written.
  std::vector<Tokenized> tokenized;
  for (const auto& in : inputs) tokenized.push_back(tokenize_text_input(model.tokenizer(), in));
  std::vector<ExplainedInput> out;
  std::map<std::string, Error> failed_once;
  for (size_t i = 0; i < inputs.size(); ++i) {
    TextExplained x = explain_text_input(model, inputs[i], tokenized[i], request, methods, layer, failed_once, i, inputs.size());
    ExplainedInput& e = x.e;
    e.dir = (fs::path(request.out_dir) / inputs[i].stem).string();
    ensure_inner_dir(e.dir);
    remove_stale_temporaries(e.dir);
    std::set<std::string> written;
    for (const auto& [name, bytes] : x.files) {
      write_file_atomic((fs::path(e.dir) / name).string(), bytes);
      written.insert(name);
    }
    remove_stale_files(e.dir, written);
    write_file_atomic((fs::path(e.dir) / "explanation.json").string(), e.json.dump(2) + "\n");
    out.push_back(std::move(e));
  }
  for (auto& [name, err] : failed_once) {
    if (failures) failures->push_back(err);
    else throw err;
  }
  return out;
}

}  // namespace salient
