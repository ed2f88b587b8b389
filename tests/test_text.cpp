// The text path's tokenizer: BERT's basic split and greedy longest-match WordPiece, on the classic
// examples of BERT's own documentation, Unicode punctuation and case, truncation and the
// metadata's "tokenizer" object.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/layers.hpp"
#include "salient/metadata.hpp"
#include "salient/npy.hpp"
#include "salient/fsutil.hpp"
#include "salient/registry.hpp"
#include "salient/text.hpp"
#include "salient/text_explain.hpp"

using namespace salient;

namespace {

using Strings = std::vector<std::string>;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// BERT's README: "unaffable" -> un ##aff ##able; its tokenization docstring: "unwanted running" ->
// un ##want ##ed runn ##ing (punctuation its own token, upper case lowered first).
TEST(WordPiece, SplitsWordsIntoTheLongestPiecesOfTheVocabulary) {
  const WordPiece a(TokenizerConfig{}, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "una", "##ffable"});
  // Greedy from the left: "una" is longer than "un", and "##ffable" then completes the word.
  EXPECT_EQ(a.pieces("unaffable"), (Strings{"una", "##ffable"}));
  const WordPiece b(TokenizerConfig{}, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able"});
  EXPECT_EQ(b.pieces("unaffable"), (Strings{"un", "##aff", "##able"}));

  const WordPiece bert(TokenizerConfig{}, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ","});
  const Tokenized t = bert.encode("UNwanted,running");
  EXPECT_EQ(t.tokens, (Strings{"[CLS]", "un", "##want", "##ed", ",", "runn", "##ing", "[SEP]"}));
  EXPECT_EQ(t.ids, (std::vector<int64_t>{2, 8, 5, 6, 11, 9, 10, 3}));
  EXPECT_EQ(t.words, (Strings{"UNwanted", ",", "running"}));  // as written
  EXPECT_EQ(t.word, (std::vector<int64_t>{-1, 0, 0, 0, 1, 2, 2, -1}));
  EXPECT_FALSE(t.truncated);
  // A word with a character no piece covers is unknown as a whole (BERT's rule), as is one too long.
  EXPECT_EQ(bert.pieces("unwanted\u2603"), (Strings{"[UNK]"}));
  EXPECT_EQ(bert.pieces(std::string(101, 'a')), (Strings{"[UNK]"}));
  EXPECT_EQ(bert.encode("wanted snowman").ids, (std::vector<int64_t>{2, 4, 6, 1, 3}));  // want ##ed, then no piece for "s..."
  // Case kept when lower_case is off: "UNwanted" then matches nothing.
  TokenizerConfig cased;
  cased.lower_case = false;
  EXPECT_EQ(WordPiece(cased, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "un"}).encode("UN un").tokens, (Strings{"[CLS]", "[UNK]", "un", "[SEP]"}));
}

TEST(WordPiece, PunctuationAndCaseAreUnicodeAware) {
  EXPECT_EQ(WordPiece::split("¿Qué tal?  «Très bien» — dit-il…"),
            (Strings{"¿", "Qué", "tal", "?", "«", "Très", "bien", "»", "—", "dit", "-", "il", "…"}));
  EXPECT_EQ(WordPiece::split("a\tb\u00A0c\x01" "d"), (Strings{"a", "b", "cd"}));  // tab and no-break space split; a control char is dropped
  EXPECT_EQ(WordPiece::lower("ŁÓDŹ ÜBER ÆØÅ ΑΘΗΝΑ МОСКВА"), "łódź über æøå αθηνα москва");
  EXPECT_EQ(WordPiece::lower("Straße ×"), "straße ×");  // ß and the multiplication sign stay
  // Invalid UTF-8 never crashes: the bad byte is a replacement character, dropped as a control.
  EXPECT_EQ(WordPiece::split(std::string("ab\xff" "cd")), (Strings{"abcd"}));
  EXPECT_EQ(WordPiece::split(std::string("ab\xc3")), (Strings{"ab"}));  // a sequence cut short
}

// BERT's own algorithm (tools/bert_tokenizer_reference.py, Python's unicodedata): uncased strips
// accents after NFD ("Café" -> cafe, "İstanbul" -> istanbul), every CJK ideograph is a word, Unicode
// punctuation (P*) splits, Zs is whitespace and C* is dropped; cased keeps case and accents. It used
// to keep accents, lower-case only Latin/Greek/Cyrillic and split no CJK.
TEST(WordPiece, TokensEqualBertsReferenceAlgorithm) {
  std::ifstream in(std::string(SALIENT_TESTDATA) + "/bert_tokens.json");
  ASSERT_TRUE(in) << "run the bert_tokenizer_reference fixture";
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto vocab = ref["vocab"].get<std::vector<std::string>>();
  TokenizerConfig uncased, cased;
  uncased.max_length = cased.max_length = 200;
  cased.lower_case = cased.strip_accents = false;
  const WordPiece u(uncased, vocab), c(cased, vocab);
  ASSERT_GE(ref["cases"].size(), 10u);
  for (const auto& k : ref["cases"]) {
    const std::string text = k["text"];
    for (const auto& [tok, key] : {std::pair<const WordPiece*, const char*>{&u, "uncased"}, {&c, "cased"}}) {
      Strings got = tok->encode(text).tokens;
      got = Strings(got.begin() + 1, got.end() - 1);  // less [CLS] and [SEP]
      EXPECT_EQ(got, k[key].get<Strings>()) << key << ": " << text;
    }
  }
  // The metadata's strip_accents follows lower_case unless given (BERT's rule).
  EXPECT_TRUE(TokenizerConfig::from_json({{"vocab", "v.txt"}}, "/", "m").strip_accents);
  EXPECT_FALSE(TokenizerConfig::from_json({{"vocab", "v.txt"}, {"lower_case", false}}, "/", "m").strip_accents);
  EXPECT_FALSE(TokenizerConfig::from_json({{"vocab", "v.txt"}, {"strip_accents", false}}, "/", "m").strip_accents);
}

// One 5 MB word is [UNK] as BERT's max_input_chars_per_word makes it, kept as its first 101
// characters (the tokenizer held the whole word, 5-10 us a character); an explained text cut at
// max_length keeps only its explained words in explanation.json.
TEST(WordPiece, AHugeWordIsUnknownAndACutTextKeepsOnlyWhatIsExplained) {
  TokenizerConfig c;
  const WordPiece wp(c, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "the"});
  const Tokenized t = wp.encode(std::string(5'000'000, 'a') + " the");
  EXPECT_EQ(t.tokens, (Strings{"[CLS]", "[UNK]", "the", "[SEP]"}));
  EXPECT_EQ(t.words[0].size(), 101u);
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the river runs ";
  const auto r = test::run_cli("explain -m " + test::quoted(test::source_dir() + "/models/langid/langid.pt") + " --text " + test::quoted(text) +
                               " --method occlusion --out " + test::quoted(dir / "o"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir / "o/text-1/explanation.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_TRUE(j["text_cut"].get<bool>());
  const std::string kept = j["text"];
  EXPECT_LT(kept.size(), 400u) << kept.size();
  EXPECT_EQ(kept.rfind("the river runs", 0), 0u);
}

TEST(WordPiece, LongTextIsTruncatedToMaxLengthAndEmptyTextIsAnError) {
  TokenizerConfig c;
  c.max_length = 5;  // [CLS] + 3 tokens + [SEP]
  const WordPiece w(c, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "##b"});
  const Tokenized t = w.encode("a bb a b");
  EXPECT_EQ(t.tokens, (Strings{"[CLS]", "a", "b", "##b", "[SEP]"}));
  EXPECT_EQ(t.word, (std::vector<int64_t>{-1, 0, 1, 1, -1}));
  EXPECT_TRUE(t.truncated);
  EXPECT_FALSE(w.encode("a bb").truncated);
  EXPECT_NE(error_of([&] { w.encode(" \t\n"); }).find("an empty text"), std::string::npos);
  TokenizerConfig none;  // a model without cls/sep: every position is the text's
  none.cls = none.sep = "";
  none.max_length = 2;
  EXPECT_EQ(WordPiece(none, {"[PAD]", "[UNK]", "a"}).encode("a a a").ids, (std::vector<int64_t>{2, 2}));
  EXPECT_NE(error_of([] { WordPiece(TokenizerConfig{}, {"[PAD]", "[CLS]", "[SEP]"}); }).find("has no unk token '[UNK]'"), std::string::npos);
}

TEST(WordPiece, TheMetadataNamesTheVocabularyBesideIt) {
  test::TempDir dir;
  {
    std::ofstream v(dir / "vocab.txt");
    v << "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##s\r\n";  // a CRLF line too
  }
  {
    std::ofstream m(dir / "m.json");
    m << R"({"labels": ["a", "b"], "modality": "text", "tokenizer": {"vocab": "vocab.txt", "max_length": 16, "inputs": "ids,mask"}})";
  }
  const ModelMetadata meta = ModelMetadata::load(dir / "m.json");
  const TokenizerConfig c = TokenizerConfig::from_json(nlohmann::json::parse(meta.tokenizer), "/elsewhere", "test");
  EXPECT_EQ(c.vocab, (std::filesystem::absolute(dir / "vocab.txt")).string());  // made absolute at load
  EXPECT_TRUE(c.mask_input);
  const WordPiece w(c);
  EXPECT_EQ(w.size(), 6);
  EXPECT_EQ(w.encode("Hellos").tokens, (Strings{"[CLS]", "hello", "##s", "[SEP]"}));
  {
    std::ofstream m(dir / "bad.json");
    m << R"({"labels": ["a"], "tokenizer": {"vocab": "vocab.txt", "inputs": "mask"}})";
  }
  EXPECT_NE(error_of([&] { ModelMetadata::load(dir / "bad.json"); }).find("tokenizer \"inputs\" is ids or ids,mask"), std::string::npos);
  {
    std::ofstream m(dir / "short.json");
    m << R"({"labels": ["a"], "tokenizer": {"vocab": "vocab.txt", "max_length": 2}})";
  }
  EXPECT_NE(error_of([&] { ModelMetadata::load(dir / "short.json"); }).find("max_length must leave room"), std::string::npos);
}

// ---- attributions at the embedding layer ------------------------------------------------------

namespace {

constexpr int64_t kVocab = 12, kDim = 5, kClasses = 3;

// A vocabulary file and a text model's metadata naming it.
ModelMetadata text_metadata(const test::TempDir& dir, bool mask_input) {
  {
    std::ofstream v(dir / "vocab.txt");
    v << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nsat\non\nmat\n##s\n.\n";
  }
  ModelMetadata meta;
  meta.present = true;
  meta.modality = "text";
  meta.labels = {"a", "b", "c"};
  meta.tokenizer = nlohmann::json{{"vocab", dir / "vocab.txt"}, {"max_length", 16}, {"mask", "[MASK]"},
                                  {"inputs", mask_input ? "ids,mask" : "ids"}}.dump();
  return meta;
}

// Mean-pooled embeddings and a linear layer: f(ids) = W (sum_t m_t e_t / sum_t m_t) + b, the mask m
// being ids != [PAD] (computed inside) or the model's second input.
torch::jit::Module mean_pooled(const torch::Tensor& E, const torch::Tensor& W, const torch::Tensor& b, bool mask_input) {
  torch::jit::Module emb("Embedding");
  emb.register_parameter("weight", E.clone(), false);
  emb.define(R"(
    def forward(self, ids):
        return torch.embedding(self.weight, ids)
  )");
  torch::jit::Module m("MeanPooled");
  m.register_module("embedding", emb);
  m.register_parameter("weight", W.clone(), false);
  m.register_parameter("bias", b.clone(), false);
  if (mask_input)
    m.define(R"(
    def forward(self, ids, mask):
        e = self.embedding.forward(ids)
        m = mask.to(e.dtype).unsqueeze(2)
        return torch.matmul((e * m).sum(1) / m.sum(1), self.weight.t()) + self.bias
  )");
  else
    m.define(R"(
    def forward(self, ids):
        e = self.embedding.forward(ids)
        m = (ids != 0).to(e.dtype).unsqueeze(2)
        return torch.matmul((e * m).sum(1) / m.sum(1), self.weight.t()) + self.bias
  )");
  return m;
}

struct TextFixture {
  test::TempDir dir;
  torch::Tensor E, W, b;
  std::unique_ptr<Model> model;
  explicit TextFixture(bool mask_input) {
    torch::manual_seed(3);
    E = torch::randn({kVocab, kDim});
    W = torch::randn({kClasses, kDim});
    b = torch::randn({kClasses});
    const ModelMetadata meta = text_metadata(dir, mask_input);
    model = std::make_unique<Model>(mean_pooled(E, W, b, mask_input), ModelOptions{}, meta);
  }
  // One method's token scores [L] for ids [L] and class c, at the embeddings.
  torch::Tensor scores(const std::string& method, const torch::Tensor& ids, int64_t c, const nlohmann::json& options = {}) {
    auto m = Registry::builtin().create(method, options, model->metadata());
    EmbeddingScope scope(*model, "embedding", ids.unsqueeze(0));
    const torch::Tensor emb = model->embed(ids.unsqueeze(0));
    return m->attribute(*model, emb, torch::tensor({c})).map[0].to(torch::kDouble).sum(1);
  }
};

std::vector<double> as_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

// IG on the embeddings from the pad baseline (cls/sep kept) is exactly w_c . (e_t - e_pad) / L per
// token on a mean-pooled linear model; gradient x embedding is w_c . e_t / L; the token-removing
// methods (occlusion, KernelSHAP with every coalition) agree with IG there, since f is linear in
// each token's embedding.
TEST(TextAttribution, MeanPooledLinearModelHasClosedForms) {
  TextFixture f(false);
  const torch::Tensor ids = torch::tensor({2, 5, 6, 7, 8, 5, 9, 10, 11, 3}, torch::kLong);  // [CLS] the cat sat on the mat ##s . [SEP]
  const int64_t L = ids.size(0), c = 1;
  const torch::Tensor w = f.W[c].to(torch::kDouble), E = f.E.to(torch::kDouble);
  const torch::Tensor e = E.index_select(0, ids);
  torch::Tensor ig = (e - E[0]).matmul(w) / static_cast<double>(L);
  ig[0] = 0;      // [CLS] and [SEP] stay in the baseline
  ig[L - 1] = 0;
  const torch::Tensor ixg = e.matmul(w) / static_cast<double>(L);
  EXPECT_TRUE(torch::allclose(f.scores("integrated-gradients", ids, c), ig, 1e-5, 1e-6)) << f.scores("integrated-gradients", ids, c) << ig;
  EXPECT_TRUE(torch::allclose(f.scores("input-x-gradient", ids, c), ixg, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(f.scores("occlusion", ids, c), ig, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(f.scores("kernel-shap", ids, c, {{"samples", 2000}}), ig, 1e-4, 1e-5));
  // unk in place of pad: w_c . (e_t - e_unk) / L
  torch::Tensor ig_unk = (e - E[1]).matmul(w) / static_cast<double>(L);
  ig_unk[0] = ig_unk[L - 1] = 0;
  EXPECT_TRUE(torch::allclose(f.scores("integrated-gradients", ids, c, {{"baseline", "unk"}}), ig_unk, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(f.scores("occlusion", ids, c, {{"baseline", "unk"}}), ig_unk, 1e-5, 1e-6));
  // zeros: the zero vector for every token, cls/sep too
  EXPECT_TRUE(torch::allclose(f.scores("integrated-gradients", ids, c, {{"baseline", "zeros"}}), ixg, 1e-5, 1e-6));
  // A text baseline outside a text model is refused by name.
  EXPECT_NE(error_of([] { Registry::builtin().create("integrated-gradients", {{"baseline", "pad"}}, ModelMetadata{}); }).find("needs a text model"),
            std::string::npos);
}

// A model of (ids, mask): padding positions get no attribution and do not change the prediction.
TEST(TextAttribution, PaddingOfAnIdsAndMaskModelIsInert) {
  TextFixture f(true);
  ASSERT_EQ(f.model->input_count(), 2u);
  const torch::Tensor ids = torch::tensor({2, 5, 6, 7, 3}, torch::kLong);
  const torch::Tensor padded = torch::tensor({2, 5, 6, 7, 3, 0, 0, 0}, torch::kLong);
  const torch::Tensor p1 = f.model->predict(ids.unsqueeze(0)), p2 = f.model->predict(padded.unsqueeze(0));
  EXPECT_TRUE(torch::allclose(p1, p2, 1e-6, 1e-6)) << p1 << p2;
  for (const std::string m : {"integrated-gradients", "input-x-gradient", "saliency", "occlusion", "kernel-shap"}) {
    const torch::Tensor s = f.scores(m, padded, 0);
    // exactly 0, but for KernelSHAP's least-squares solve (rounding: ~1e-11)
    EXPECT_LE(s.slice(0, 5).abs().max().item<double>(), m == "kernel-shap" ? 1e-8 : 0.0) << m << ": " << s;
    if (m != "saliency" && m != "kernel-shap")  // the real tokens' scores are the unpadded input's
      EXPECT_TRUE(torch::allclose(s.slice(0, 0, 5), f.scores(m, ids, 0), 1e-5, 1e-6)) << m;
  }
}

// `salient explain` on a text model: the HTML holds every token as escaped text (no tag), the
// JSON tokens, words, scores and the truncation warning; ids from an .npy give the same scores;
// bad input is one line, exit 2, nothing written.
TEST(TextAttribution, ExplainWritesEscapedHtmlAndRefusesBadInput) {
  test::TempDir dir;
  const std::string model = test::source_dir() + "/models/langid/langid.pt";
  const std::string out = dir / "out";
  const std::string script = "<script>alert(1)</script>";
  std::string long_text;
  for (int k = 0; k < 100; ++k) long_text += "uno dos ";
  auto r = test::run_cli("explain --model " + model + " --text " + test::quoted("Le " + script + " chien") +
                         " --text " + test::quoted(long_text) +
                         " --method integrated-gradients,occlusion --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string html = read_file(out + "/text-1/integrated-gradients.html");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("&lt;</span>"), std::string::npos);
  EXPECT_NE(html.find("&gt;</span>"), std::string::npos);
  const auto j = nlohmann::json::parse(read_file(out + "/text-1/explanation.json"));
  EXPECT_EQ(j["text"], "Le " + script + " chien");
  EXPECT_EQ(j["tokens"].size(), j["ids"].size());
  EXPECT_EQ(j["words"][1], "<");
  const auto& ig = j["explained"][0]["methods"]["integrated-gradients"];
  EXPECT_EQ(ig["scores"].size(), j["tokens"].size());
  EXPECT_EQ(ig["l2"].size(), j["tokens"].size());
  EXPECT_LT(std::abs(ig["diagnostics"]["completeness_gap"].get<double>()), 1e-3);
  const auto j2 = nlohmann::json::parse(read_file(out + "/text-2/explanation.json"));
  ASSERT_TRUE(j2.contains("warnings"));
  EXPECT_NE(j2["warnings"][0].get<std::string>().find("max_length"), std::string::npos);
  EXPECT_EQ(j2["tokens"].size(), 64u);
  // The same ids as an .npy of int64: the same scores.
  std::vector<int64_t> ids = j["ids"].get<std::vector<int64_t>>();
  {
    std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1, " + std::to_string(ids.size()) + "), }";
    header += std::string(64 - (10 + header.size() + 1) % 64, ' ') + "\n";
    std::ofstream npy(dir / "ids.npy", std::ios::binary);
    npy << "\x93NUMPY" << '\x01' << '\x00' << static_cast<char>(header.size() & 0xFF) << static_cast<char>(header.size() >> 8) << header;
    npy.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * sizeof(int64_t)));
  }
  r = test::run_cli("explain --model " + model + " --input " + (dir / "ids.npy") + " --method integrated-gradients --out " + (dir / "ids"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j3 = nlohmann::json::parse(read_file(dir / "ids/ids-0/explanation.json"));
  const auto a = ig["scores"].get<std::vector<double>>(), b = j3["explained"][0]["methods"]["integrated-gradients"]["scores"].get<std::vector<double>>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5);
  // Again into the same folder with another method: the first one's files go with its record.
  r = test::run_cli("explain --model " + model + " --input " + (dir / "ids.npy") + " --method input-x-gradient --out " + (dir / "ids"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "ids/ids-0/input-x-gradient.html"));
  for (const char* ext : {".html", ".png", ".npy"})
    EXPECT_FALSE(std::filesystem::exists(dir / ("ids/ids-0/integrated-gradients" + std::string(ext)))) << ext << " left stale";

  // `salient layers` runs a text model on sample ids: the embedding's output is [1, 8, D].
  r = test::run_cli("layers --model " + model);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Embedding"), std::string::npos);
  EXPECT_NE(r.out.find("[1,8,16]"), std::string::npos) << r.out;

  // Bad input: one line naming the problem, exit 2, nothing written.
  {
    std::ofstream t(dir / "lines.txt");
    t << "una frase\n\nanother\n";
  }
  const std::string bad = dir / "bad";
  for (const std::string& args : {"--input " + (dir / "lines.txt"), std::string("--text ''"), std::string("--text hello --method grad-cam"),
                                  "--input " + test::first_sample(), std::string("--text hi --baseline black"),
                                  std::string("--text hi --method lime --features grid:3")}) {
    r = test::run_cli("explain --model " + model + " " + args + " --out " + bad);
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(test::count_files(bad), 0) << args;
  }
  r = test::run_cli("explain --model " + model + " --input " + (dir / "lines.txt") + " --out " + bad);
  EXPECT_NE(r.err.find("line 2 is empty"), std::string::npos) << r.err;
}

namespace {

// The demo's held-out lines and their languages.
std::vector<std::pair<std::string, std::string>> langid_test_lines() {
  std::istringstream t(read_file(test::source_dir() + "/models/langid/test.txt"));
  std::istringstream l(read_file(test::source_dir() + "/models/langid/test_labels.txt"));
  std::vector<std::pair<std::string, std::string>> out;
  for (std::string text, label; std::getline(t, text) && std::getline(l, label);) out.emplace_back(text, label);
  return out;
}

}  // namespace

// The langid demo: held-out accuracy >= 0.95 through Salient's own tokenizer; IG's token scores sum
// to f(x) - f(baseline); deleting each line's top-3 IG tokens lowers the predicted language's
// probability more than deleting 3 random ones, on average over the test lines.
TEST(TextAttribution, LangidDemoIsAccurateCompleteAndItsTopTokensMatter) {
  Model model(test::source_dir() + "/models/langid/langid.pt");
  ASSERT_TRUE(model.text());
  const WordPiece& tok = model.tokenizer();
  const auto lines = langid_test_lines();
  ASSERT_GE(lines.size(), 300u);
  const std::vector<std::string> codes = {"en", "de", "es", "it", "pt", "pl"};
  auto ig = Registry::builtin().create("integrated-gradients", {}, model.metadata());
  const std::string layer = model.default_embedding_layer();
  EXPECT_EQ(layer, "embedding");
  int correct = 0, compared = 0;
  double drop_top = 0, drop_random = 0, worst_gap = 0;
  std::mt19937 rng(7);
  for (size_t i = 0; i < lines.size(); ++i) {
    const Tokenized t = tok.encode(lines[i].first);
    const torch::Tensor ids = torch::tensor(t.ids, torch::kLong).unsqueeze(0);
    const torch::Tensor p = torch::softmax(model.predict(ids), 1)[0];
    const int64_t c = p.argmax().item<int64_t>();
    correct += codes[static_cast<size_t>(c)] == lines[i].second;
    std::vector<double> s;
    {
      EmbeddingScope scope(model, layer, ids);
      const Attribution a = ig->attribute(model, model.embed(ids), torch::tensor({c}));
      s = as_vector(a.map[0].sum(1));
      worst_gap = std::max(worst_gap, std::abs(a.diagnostics["completeness_gap"][0].get<double>()));
      double sum = 0;
      for (double v : s) sum += v;
      EXPECT_NEAR(sum, a.diagnostics["f(x)-f(x0)"][0].get<double>(), 1e-3);
    }
    std::vector<size_t> inner;  // the text's tokens (not cls/sep)
    for (size_t k = 1; k + 1 < t.ids.size(); ++k) inner.push_back(k);
    if (inner.size() < 6) continue;
    auto without = [&](std::vector<size_t> drop) {
      std::sort(drop.begin(), drop.end());
      std::vector<int64_t> kept;
      for (size_t k = 0; k < t.ids.size(); ++k)
        if (!std::binary_search(drop.begin(), drop.end(), k)) kept.push_back(t.ids[k]);
      return torch::softmax(model.predict(torch::tensor(kept, torch::kLong).unsqueeze(0)), 1)[0][c].item<double>();
    };
    std::vector<size_t> by_score = inner;
    std::sort(by_score.begin(), by_score.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
    std::vector<size_t> random = inner;
    std::shuffle(random.begin(), random.end(), rng);
    const double p0 = p[c].item<double>();
    drop_top += p0 - without({by_score[0], by_score[1], by_score[2]});
    drop_random += p0 - without({random[0], random[1], random[2]});
    ++compared;
  }
  const double accuracy = static_cast<double>(correct) / static_cast<double>(lines.size());
  EXPECT_GE(accuracy, 0.95);
  EXPECT_LT(worst_gap, 1e-3);
  ASSERT_GT(compared, 100);
  EXPECT_GT(drop_top / compared, drop_random / compared + 0.01) << "top-3 " << drop_top / compared << " random " << drop_random / compared;
  std::cout << "langid: accuracy " << accuracy << ", mean drop top-3 " << drop_top / compared << " vs random " << drop_random / compared
            << " over " << compared << " lines\n";
}

// Token and position embeddings: the default layer is the one called on the ids themselves, whatever
// the order of definition; IG from the pad baseline is then complete on a nonlinear model.
TEST(TextAttribution, TheDefaultLayerIsTheEmbeddingThatReadsTheIds) {
  test::TempDir dir;
  torch::manual_seed(5);
  auto embedding = [](const torch::Tensor& w) {
    torch::jit::Module e("Embedding");
    e.register_parameter("weight", w, false);
    e.define(R"(
    def forward(self, ids):
        return torch.embedding(self.weight, ids)
  )");
    return e;
  };
  torch::jit::Module m("Positional");
  m.register_module("pos", embedding(torch::randn({16, kDim})));
  m.register_module("tok", embedding(torch::randn({kVocab, kDim})));
  m.register_parameter("weight", torch::randn({kClasses, kDim}), false);
  m.define(R"(
    def forward(self, ids):
        p = self.pos.forward(torch.arange(ids.size(1)).unsqueeze(0))
        e = torch.tanh(self.tok.forward(ids) + p)
        return torch.matmul(e.mean(1), self.weight.t())
  )");
  Model model(m, ModelOptions{}, text_metadata(dir, false));
  EXPECT_EQ(model.default_embedding_layer(), "tok");
  const torch::Tensor ids = torch::tensor({2, 5, 6, 7, 3}, torch::kLong).unsqueeze(0);
  auto ig = Registry::builtin().create("integrated-gradients", {{"steps", 200}}, model.metadata());
  EmbeddingScope scope(model, "tok", ids);
  const Attribution a = ig->attribute(model, model.embed(ids), torch::tensor({int64_t{2}}));
  EXPECT_LT(std::abs(a.diagnostics["relative_gap"][0].get<double>()), 1e-3);
  const torch::Tensor s = a.map[0].sum(1);
  EXPECT_EQ(s[0].item<double>(), 0.0);  // [CLS] and [SEP] are in the baseline too
  EXPECT_EQ(s[4].item<double>(), 0.0);
}

// An nn.EmbeddingBag classifier (fastText's shape), scripted by PyTorch: the bag is the default
// layer, its tokens' vectors are what is attributed, and IG there equals eager IG on the same model
// written over per-token vectors (tools/zoo_models.py), for mode mean with padding_idx (the padded
// row's padding gets zero), mode sum, and mode max in a traced model (whose bag keeps its mode and
// padding_idx only as graph constants); the prediction in embedding mode is the model's. A bag
// called with offsets is refused by name.
TEST(TextAttribution, EmbeddingBagTokensMatchEagerIntegratedGradients) {
  const std::string zoo = std::string(SALIENT_TESTDATA) + "/zoo/";
  test::TempDir dir;
  const ModelMetadata meta = text_metadata(dir, false);
  const torch::Tensor ids = read_npy(zoo + "bag_ids.npy").to(torch::kLong);  // [2, 8], row 1 padded
  for (const std::string mode : {"mean", "sum", "max"}) {  // max: a traced model
    Model model(torch::jit::load(zoo + "bag_" + mode + ".pt"), ModelOptions{}, meta);
    EXPECT_EQ(model.default_embedding_layer(), "bag");
    const torch::Tensor targets = read_npy(zoo + "bag_targets_" + mode + ".npy").to(torch::kLong);
    const torch::Tensor want = read_npy(zoo + "bag_ig_" + mode + ".npy").to(torch::kDouble);
    auto ig = Registry::builtin().create("integrated-gradients", nlohmann::json::object(), meta);
    for (int64_t i = 0; i < 2; ++i) {
      const torch::Tensor row = ids.slice(0, i, i + 1), logits = model.predict(row);
      EmbeddingScope scope(model, "bag", row);
      const torch::Tensor emb = model.embed(row);
      EXPECT_EQ(emb.sizes(), (std::vector<int64_t>{1, 8, 5}));
      EXPECT_LT((model.predict(emb) - logits).abs().max().item<double>(), 1e-6) << mode;
      const Attribution a = ig->attribute(model, emb, targets.slice(0, i, i + 1));
      const torch::Tensor got = a.map[0].to(torch::kDouble).sum(1);
      EXPECT_LT((got - want[i]).abs().max().item<double>(), 2e-6) << mode << " row " << i << ": " << got << want[i];
      if (mode != "max") EXPECT_LT(a.diagnostics["relative_gap"][0].get<double>(), 1e-4) << mode;  // max: kinks, as eager IG's
      if (i == 1) EXPECT_EQ(got.slice(0, 5).abs().max().item<double>(), 0.0) << mode;  // the padding
    }
  }
  Model offsets(torch::jit::load(zoo + "bag_offsets.pt"), ModelOptions{}, meta);
  const std::string err = error_of([&] { EmbeddingScope scope(offsets, offsets.default_embedding_layer(), ids.slice(0, 0, 1)); });
  EXPECT_NE(err.find("the EmbeddingBag 'bag' is called with offsets"), std::string::npos) << err;
}

// A transformer text classifier (token + position embeddings, a key-padding mask, which sends
// PyTorch's encoder down its fused fast path), forward(ids, mask): its layers are listed on padded
// ids, the token embedding is the default layer, and IG there is complete with the padding inert.
TEST(TextAttribution, ATransformerWithAPaddingMaskIsListedAndExplained) {
  test::TempDir dir;
  const ModelMetadata meta = text_metadata(dir, /*mask_input=*/true);
  Model model(torch::jit::load(std::string(SALIENT_TESTDATA) + "/zoo/text_transformer.pt"), ModelOptions{}, meta);
  const torch::Tensor ids = torch::tensor(std::vector<int64_t>{2, 5, 6, 7, 3, 0, 0}).unsqueeze(0), target = torch::tensor({int64_t{1}});
  const auto layers = list_layers(model, ids);  // padded: the encoder takes its nested fast path
  ASSERT_FALSE(layers.empty());
  EXPECT_EQ(layers[0].path, "tok");
  EXPECT_EQ(layers[0].shape, (std::vector<int64_t>{1, 7, 32}));
  EXPECT_EQ(model.default_embedding_layer(), "tok");
  auto ig = Registry::builtin().create("integrated-gradients", nlohmann::json{{"steps", 200}}, meta);
  EmbeddingScope scope(model, "tok", ids);
  const Attribution a = ig->attribute(model, model.embed(ids), target);
  EXPECT_LT(a.diagnostics["relative_gap"][0].get<double>(), 5e-3);
  const torch::Tensor tokens = a.map[0].sum(1);
  EXPECT_EQ(tokens.slice(0, 5).abs().max().item<double>(), 0.0);  // the padding
  EXPECT_GT(tokens.slice(0, 1, 4).abs().max().item<double>(), 0.0);
}

// A transformer traced under torch.no_grad() (the usual export) holds the fused
// aten::_transformer_encoder_layer_fwd, which has no derivative: its gradient methods are refused by
// name with the fix before any work, and the black-box methods asked in the same run are written
// (it used to exit 1 with LibTorch's "derivative ... not implemented" and write nothing).
TEST(TextAttribution, ANoGradTracedTransformerRefusesGradientMethodsAndRunsTheOthers) {
  test::TempDir dir;
  ModelMetadata meta = text_metadata(dir, /*mask_input=*/false);
  {
    std::ofstream(dir / "ids.json") << meta.to_json().dump();
    std::ofstream(dir / "seq.json") << nlohmann::json{{"labels", {"a", "b", "c"}}, {"input_shape", {6, 16}}}.dump();
  }
  const std::string zoo = std::string(SALIENT_TESTDATA) + "/zoo/";
  write_npy(dir / "seq.npy", torch::randn({2, 6, 16}));
  struct C {
    std::string model, input, meta;
  };
  for (const C& c : {C{"nograd_transformer_ids.pt", "--text 'the cat sat'", "ids.json"},
                     C{"nograd_transformer_seq.pt", "-i " + test::quoted(dir / "seq.npy"), "seq.json"}}) {
    const std::string out = dir / ("out-" + c.meta);
    const auto r = test::run_cli("explain -m " + test::quoted(zoo + c.model) + " --metadata " + test::quoted(dir / c.meta) + " " + c.input +
                                 " --method saliency,occlusion,integrated-gradients --out " + test::quoted(out));
    EXPECT_EQ(r.code, 2) << c.model << r.err;
    EXPECT_NE(r.err.find("saliency: needs gradients, but the model's aten::_transformer_encoder_layer_fwd has no derivative"),
              std::string::npos) << r.err;
    EXPECT_NE(r.err.find("integrated-gradients: needs gradients"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("torch.jit.script"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("internal"), std::string::npos) << r.err;
    // The black-box method's files and the record are written; the refusals are in the record.
    const std::string item = c.meta == "ids.json" ? out + "/text-1" : out + "/seq_0";
    ASSERT_TRUE(std::filesystem::exists(item + "/occlusion.npy")) << c.model << "\n" << r.out << r.err;
    EXPECT_FALSE(std::filesystem::exists(item + "/saliency.npy"));
    std::ifstream in(item + "/explanation.json");
    const auto j = nlohmann::json::parse(in);
    ASSERT_TRUE(j.contains("failed")) << j.dump();
    EXPECT_TRUE(j["failed"].contains("saliency") && j["failed"].contains("integrated-gradients")) << j["failed"].dump();
    EXPECT_FALSE(j["failed"].contains("occlusion"));
  }
}
