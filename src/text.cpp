#include "salient/text.hpp"

#include <filesystem>
#include <sstream>

#include <utf8proc.h>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

// UTF-8 <-> code points. An invalid byte becomes U+FFFD (so a broken file is never a crash).
// The code point at byte i, advancing i past it.
char32_t next_cp(const std::string& s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
  if (extra < 0 || (extra > 0 && i + static_cast<size_t>(extra) >= s.size())) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = extra == 0 ? c : extra == 1 ? (c & 0x1F) : extra == 2 ? (c & 0x0F) : (c & 0x07);
  bool ok = true;
  for (int k = 1; k <= extra; ++k) {
    const auto d = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((d >> 6) != 2) ok = false;
    cp = (cp << 6) | (d & 0x3F);
  }
  i += ok ? static_cast<size_t>(extra) + 1 : 1;
  return ok ? cp : 0xFFFD;
}

std::vector<char32_t> decode(const std::string& s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) out.push_back(next_cp(s, i));
  return out;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Unicode's simple lower-case mapping (utf8proc's tables, Unicode 14+), as Python's str.lower for
// every character whose lower case is one character.
char32_t lower_one(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

// BERT's basic tokenizer (google-research/bert tokenization.py), character by character:
// whitespace is space, tab, newline, return or category Zs; control is any other category C*; the
// text's NULs and U+FFFD are dropped as control.
// (BERT's final split is Python's str.split, which also splits at the line and paragraph separators.)
bool is_space(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  const utf8proc_category_t k = category(c);
  return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c == 0 || c == 0xFFFD) return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: return true;
    default: return false;
  }
}

// Every ASCII symbol (so "$" and "^" split too) and every character of a category P*.
bool is_punct(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return true;
    default: return false;
  }
}

// A CJK ideograph (BERT's _is_chinese_char: the CJK Unified Ideographs blocks and their
// extensions, the compatibility ideographs): each one is a word of its own.
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// NFD, then every nonspacing mark (Mn) dropped: BERT's _run_strip_accents ("Café" -> "Cafe").
std::string strip_accents(const std::vector<char32_t>& cps) {
  std::string out;
  utf8proc_int32_t buf[32];
  for (char32_t c : cps) {
    int last = 0;
    const utf8proc_ssize_t n =
        utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buf, 32, static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE), &last);
    if (n < 0 || n > 32) {
      append(out, c);
      continue;
    }
    for (utf8proc_ssize_t k = 0; k < n; ++k)
      if (category(static_cast<char32_t>(buf[k])) != UTF8PROC_CATEGORY_MN) append(out, static_cast<char32_t>(buf[k]));
  }
  return out;
}

}  // namespace

size_t invalid_utf8_at(const std::string& text) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  size_t at = 0;
  while (at < text.size()) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t n = utf8proc_iterate(p + at, static_cast<utf8proc_ssize_t>(text.size() - at), &cp);
    if (n <= 0) return at;
    at += static_cast<size_t>(n);
  }
  return std::string::npos;
}

TokenizerConfig TokenizerConfig::from_json(const nlohmann::json& j, const std::string& base_dir, const std::string& where) {
  TokenizerConfig c;
  try {
    if (!j.is_object()) throw Error(where + ": \"tokenizer\" must be an object");
    if (!j.contains("vocab") || !j["vocab"].is_string()) throw Error(where + ": \"tokenizer\" needs \"vocab\": the vocabulary file");
    c.vocab = j["vocab"].get<std::string>();
    if (fs::path(c.vocab).is_relative()) c.vocab = (fs::path(base_dir) / c.vocab).string();
    c.lower_case = j.value("lower_case", true);
    c.strip_accents = j.contains("strip_accents") && !j["strip_accents"].is_null() ? j["strip_accents"].get<bool>() : c.lower_case;
    c.max_length = j.value("max_length", int64_t{128});
    for (auto [key, field] : {std::pair{"pad", &c.pad}, {"unk", &c.unk}, {"cls", &c.cls}, {"sep", &c.sep}, {"mask", &c.mask}})
      if (j.contains(key)) *field = j[key].is_null() ? std::string() : j[key].get<std::string>();
    const std::string inputs = j.value("inputs", std::string("ids"));
    if (inputs != "ids" && inputs != "ids,mask") throw Error(where + ": tokenizer \"inputs\" is ids or ids,mask, got '" + inputs + "'");
    c.mask_input = inputs == "ids,mask";
  } catch (const nlohmann::json::exception&) {
    throw Error(where + ": a \"tokenizer\" field has the wrong type");
  }
  const int64_t specials = (c.cls.empty() ? 0 : 1) + (c.sep.empty() ? 0 : 1);
  if (c.max_length <= specials || c.max_length > 1 << 16)
    throw Error(where + ": tokenizer max_length must leave room for a token and be at most 65536, got " + std::to_string(c.max_length));
  return c;
}

WordPiece::WordPiece(TokenizerConfig config) : config_(std::move(config)) {
  std::istringstream in(read_file(config_.vocab, int64_t{64} << 20));
  std::vector<std::string> vocabulary;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    vocabulary.push_back(line);
  }
  if (vocabulary.empty()) throw Error("vocabulary '" + config_.vocab + "' is empty");
  index(vocabulary);
}

WordPiece::WordPiece(TokenizerConfig config, const std::vector<std::string>& vocabulary) : config_(std::move(config)) {
  index(vocabulary);
}

void WordPiece::index(const std::vector<std::string>& vocabulary) {
  vocab_ = vocabulary;
  for (size_t i = 0; i < vocab_.size(); ++i) ids_.emplace(vocab_[i], static_cast<int64_t>(i));  // the first of duplicates wins
  auto special = [&](const std::string& token, const char* what) -> int64_t {
    if (token.empty()) return -1;
    auto it = ids_.find(token);
    if (it == ids_.end()) throw Error("vocabulary '" + config_.vocab + "' has no " + what + " token '" + token + "'");
    return it->second;
  };
  pad_id_ = special(config_.pad, "pad");
  unk_id_ = special(config_.unk, "unk");
  cls_id_ = special(config_.cls, "cls");
  sep_id_ = special(config_.sep, "sep");
  mask_id_ = special(config_.mask, "mask");
}

int64_t WordPiece::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_id_ : it->second;
}

const std::string& WordPiece::token(int64_t id) const {
  static const std::string none;
  return id >= 0 && id < size() ? vocab_[static_cast<size_t>(id)] : none;
}

std::string WordPiece::lower(const std::string& text) {
  std::string out;
  for (char32_t c : decode(text)) append(out, lower_one(c));
  return out;
}

std::string WordPiece::normalise(const std::string& word) const {
  if (!config_.strip_accents) return config_.lower_case ? lower(word) : word;
  std::vector<char32_t> cps = decode(word);
  if (config_.lower_case)
    for (auto& c : cps) c = lower_one(c);
  return strip_accents(cps);
}

namespace {

constexpr size_t kMaxWordChars = 100;  // BERT's max_input_chars_per_word: a longer word is [UNK]

// The basic split; `space` (optional) gets, per word, whether whitespace came before it. It stops
// after `max_words` words (a text of millions of words is cut at its model's max_length anyway).
std::vector<std::string> split_words(const std::string& text, std::vector<bool>* space, size_t max_words = SIZE_MAX) {
  std::vector<std::string> words;
  std::string word;
  bool gap = false;
  auto flush = [&] {
    if (!word.empty()) {
      words.push_back(std::move(word));
      if (space) space->push_back(gap);
      gap = false;
    }
    word.clear();
  };
  // Decoded as it goes (a 50 MB text is never a 200 MB vector), and a word keeps at most
  // kMaxWordChars + 1 characters: past BERT's max_input_chars_per_word it is [UNK] whatever follows.
  size_t chars = 0;
  for (size_t i = 0; i < text.size() && words.size() < max_words;) {
    const char32_t c = next_cp(text, i);
    if (is_space(c)) {
      flush();
      chars = 0;
      gap = true;
    } else if (is_control(c)) {
      continue;
    } else if (is_punct(c) || is_cjk(c)) {
      flush();
      chars = 0;
      append(word, c);
      flush();
    } else if (chars++ <= kMaxWordChars) {
      append(word, c);
    }
  }
  flush();
  return words;
}

}  // namespace

std::vector<std::string> WordPiece::split(const std::string& text) { return split_words(text, nullptr); }

std::vector<std::string> WordPiece::pieces(const std::string& word) const {
  const std::vector<char32_t> cps = decode(word);
  const std::vector<std::string> unknown = config_.unk.empty() ? std::vector<std::string>{} : std::vector<std::string>{config_.unk};
  if (cps.size() > kMaxWordChars) return unknown;
  // Byte offsets of each code point: pieces end on character boundaries.
  std::vector<size_t> at{0};
  for (char32_t c : cps) {
    std::string one;
    append(one, c);
    at.push_back(at.back() + one.size());
  }
  std::string whole;
  for (char32_t c : cps) append(whole, c);
  std::vector<std::string> out;
  size_t start = 0;
  while (start < cps.size()) {
    size_t end = cps.size();
    std::string found;
    for (; end > start; --end) {
      std::string piece = (start > 0 ? "##" : "") + whole.substr(at[start], at[end] - at[start]);
      if (ids_.count(piece)) {
        found = std::move(piece);
        break;
      }
    }
    if (found.empty()) return unknown;  // no piece matches here: the whole word is unknown (BERT's rule)
    out.push_back(std::move(found));
    start = end;
  }
  return out;
}

Tokenized WordPiece::encode(const std::string& text) const {
  Tokenized t;
  // Every word gives at least one token: max_length + 1 words are enough to see the truncation.
  t.words = split_words(text, &t.space_before, static_cast<size_t>(config_.max_length) + 1);
  if (t.words.empty()) throw Error("an empty text has nothing to explain");
  const int64_t room = config_.max_length - (cls_id_ >= 0 ? 1 : 0) - (sep_id_ >= 0 ? 1 : 0);
  if (cls_id_ >= 0) {
    t.tokens.push_back(config_.cls);
    t.ids.push_back(cls_id_);
    t.word.push_back(-1);
    t.shown.push_back(config_.cls);
  }
  for (size_t w = 0; w < t.words.size(); ++w) {
    const std::vector<std::string> ps = pieces(normalise(t.words[w]));
    // The word as written, cut where its pieces are (when normalising kept the characters' count);
    // else, and for an unknown word, it shows whole on its first piece.
    const std::vector<char32_t> cps = decode(t.words[w]);
    size_t covered = 0;
    std::vector<size_t> lengths;
    for (const auto& p : ps) {
      lengths.push_back(decode(p.rfind("##", 0) == 0 ? p.substr(2) : p).size());
      covered += lengths.back();
    }
    size_t at = 0;
    for (size_t k = 0; k < ps.size(); ++k) {
      if (static_cast<int64_t>(t.ids.size()) - (cls_id_ >= 0 ? 1 : 0) >= room) {
        t.truncated = true;
        break;
      }
      t.tokens.push_back(ps[k]);
      t.ids.push_back(id(ps[k]));
      t.word.push_back(static_cast<int64_t>(w));
      std::string shown;
      if (covered != cps.size()) {
        shown = k == 0 ? t.words[w] : "";
      } else {
        for (size_t i = at; i < at + lengths[k]; ++i) append(shown, cps[i]);
        at += lengths[k];
      }
      t.shown.push_back(shown);
    }
    if (t.truncated) break;
  }
  if (sep_id_ >= 0) {
    t.tokens.push_back(config_.sep);
    t.ids.push_back(sep_id_);
    t.word.push_back(-1);
    t.shown.push_back(config_.sep);
  }
  return t;
}

}  // namespace salient
