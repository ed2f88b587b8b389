// The text path's tokenizer: BERT's basic split and greedy longest-match WordPiece, on the classic
// examples of BERT's own documentation, Unicode punctuation and case, truncation and the
// metadata's "tokenizer" object.
#include <gtest/gtest.h>

#include <fstream>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/metadata.hpp"
#include "salient/text.hpp"

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
