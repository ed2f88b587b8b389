#pragma once
// Text inputs: BERT's tokenizer, so that a text model's ids are made here as its training made
// them. A basic split (whitespace; every punctuation character a token of its own; optional
// lower-casing) then greedy longest-match-first WordPiece over a vocabulary file (one token a line,
// the line number its id; "##" marks a piece that continues a word), with the pad / unk / cls / sep
// tokens of the model's metadata. Words, tokens and ids stay aligned: every token knows the word
// of the original text it came from, so a token's score can be shown on the user's words.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace salient {

// The offset of the first byte of `text` that is not valid UTF-8, or std::string::npos.
size_t invalid_utf8_at(const std::string& text);

struct TokenizerConfig {
  std::string vocab;          // the vocabulary file (a metadata's path is relative to the metadata file)
  bool lower_case = true;
  bool strip_accents = true;  // NFD and nonspacing marks dropped ("Café" -> "cafe"); unset: as lower_case (BERT's rule)
  int64_t max_length = 128;   // tokens per input, cls and sep included; longer text is truncated
  std::string pad = "[PAD]", unk = "[UNK]", cls = "[CLS]", sep = "[SEP]";  // "" = the model uses none
  std::string mask;           // the mask token ("[MASK]"), for `baseline=mask`; "" = none
  bool mask_input = false;    // the model's forward takes (ids, mask), not ids alone

  // Reads the metadata's "tokenizer" object; `base_dir` resolves a relative vocab path. Throws
  // salient::Error naming the field.
  static TokenizerConfig from_json(const nlohmann::json& j, const std::string& base_dir, const std::string& where);
};

struct Tokenized {
  std::vector<std::string> words;   // the text's words and punctuation, as written (case kept)
  std::vector<std::string> tokens;  // as the vocabulary has them ("[CLS]", "un", "##aff", ...)
  std::vector<int64_t> ids;         // one per token
  std::vector<int64_t> word;        // per token: its word's index in `words`, -1 for cls/sep
  std::vector<std::string> shown;   // per token: the original text it covers (case kept; a word no
                                    // piece covers is shown whole on its unk; cls/sep as themselves)
  std::vector<bool> space_before;   // per word: whitespace came before it in the text
  bool truncated = false;           // the text had more tokens than max_length allows
};

class WordPiece {
 public:
  // Loads the vocabulary; every special token named in `config` must be in it. Throws
  // salient::Error naming the file and the missing token.
  explicit WordPiece(TokenizerConfig config);
  // From a vocabulary given as tokens (id = position), for tests and tools.
  WordPiece(TokenizerConfig config, const std::vector<std::string>& vocabulary);

  // [cls] pieces... [sep], truncated to max_length (a word cut in the middle loses its tail). An
  // empty or blank text is a salient::Error.
  Tokenized encode(const std::string& text) const;
  // The pieces of one word (no splitting, no special tokens): greedy longest match from the left,
  // continuations looked up with "##"; a word with no match (or longer than 100 characters) is unk.
  std::vector<std::string> pieces(const std::string& word) const;
  // The basic split, as BERT's basic tokenizer: whitespace (and category Zs) separates, each
  // punctuation character (ASCII symbols, categories P*) and each CJK ideograph is a word of its
  // own; control characters (categories C*) are dropped.
  static std::vector<std::string> split(const std::string& text);
  // Lower case of UTF-8 text: Unicode's simple mapping, every script.
  static std::string lower(const std::string& text);
  // A word as the vocabulary spells it: lower-cased and accents stripped as the config says.
  std::string normalise(const std::string& word) const;

  int64_t id(const std::string& token) const;  // unk's id when unknown (-1 without unk)
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t mask_id() const { return mask_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  // The token of an id ("" when out of range).
  const std::string& token(int64_t id) const;
  int64_t size() const { return static_cast<int64_t>(vocab_.size()); }
  const TokenizerConfig& config() const { return config_; }

 private:
  void index(const std::vector<std::string>& vocabulary);
  TokenizerConfig config_;
  std::map<std::string, int64_t> ids_;
  std::vector<std::string> vocab_;
  int64_t pad_id_ = -1, unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, mask_id_ = -1;
};

}  // namespace salient
