#pragma once
// Explaining text models: token attributions at the embedding layer, and their outputs.
//
// A text model's input is integer ids, whose gradient means nothing; so every method runs on the
// embedding layer's output [1, L, D] of one input, with the model in embedding mode (Model::
// set_embedding_input: the layer's output is replaced, the ids stay the input's). The gradient
// methods then are gradient x embedding, Integrated Gradients from the pad baseline (every token
// replaced by pad, cls/sep kept), SmoothGrad on the embeddings; the perturbation methods remove
// tokens (features = tokens, the baseline's embeddings in their place). A token's score is the sum
// of its map over the embedding dimension (its L2 norm is reported too).
#include <map>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/script.h>

#include "salient/explain.hpp"
#include "salient/text.hpp"

namespace salient {

// One text input: its text, or (from an .npy) its ids [L].
struct TextInput {
  std::string stem;    // output folder name: text-1, <file>-<line>, <file>-<row>
  std::string source;  // "--text 1", "FILE.txt:LINE", "FILE.npy:ROW"
  std::string text;    // empty when given as ids
  torch::Tensor ids;   // int64 [L] when given as ids
};

// `--text` values (repeatable), `.txt` files (one example a line; an empty line is an error naming
// it) and `.npy` files of int64 ids ([N, L] or [L]). Throws salient::Error.
std::vector<TextInput> load_text_inputs(const std::vector<std::string>& texts, const std::vector<std::string>& files);

// The methods that explain a text model (their input becomes the embeddings).
const std::vector<std::string>& text_methods();

// Each token's score and its L2 norm from a method's map [L, D] at the embeddings.
struct TokenScores {
  std::vector<double> score, l2;
};
TokenScores token_scores(const torch::Tensor& map);

// What a text explanation shows: the tokens, the text each covers, whether a space precedes it, and
// their scores; the page's caption (the prediction).
struct TokenView {
  std::vector<std::string> tokens, shown;
  std::vector<bool> space;
  std::vector<double> scores;
  std::string title, caption;
};
TokenView token_view(const Tokenized& t, const std::vector<double>& scores);
// A self-contained HTML page: every token a span whose background is green (positive) or red
// (negative), its strength |score| / max |score|, a legend and the caption; tokens are escaped text.
std::string token_html(const TokenView& v);
// The same as an image (BGR), for grids and reports.
cv::Mat token_image(const TokenView& v, int width = 900);
std::string html_escape(const std::string& s);

// Every method applies to text (a text_methods() name), else a salient::Error naming the others.
void check_text_methods(const std::vector<std::string>& methods);

// What explaining text checks before any work: the model is a text model, every method applies to
// text, the target is a class. Returns the embedding layer (the request's, else the default).
std::string check_text_request(Model& model, const ExplainRequest& request);

// One input's tokens (its text, or its ids as the vocabulary has them); an error names its source.
Tokenized tokenize_text_input(const WordPiece& tok, const TextInput& in);

// The ids of eight tokens, cls ... sep (unk between): a sample for `salient layers` and describing.
torch::Tensor sample_text_ids(const WordPiece& tok);

// One text input explained in memory: the record explanation.json holds (e.json, with e.predicted
// and e.warnings; e.dir unset) and its files, name -> bytes (<method>.html, .png, .npy). A method that
// fails is listed under "failed" and added to `failed_once`; the others go on. `i` of `count`
// scales the request's progress.
struct TextExplained {
  ExplainedInput e;
  std::map<std::string, std::string> files;
};
TextExplained explain_text_input(Model& model, const TextInput& in, const Tokenized& tokens, const ExplainRequest& request,
                                 MethodList& methods, const std::string& layer, std::map<std::string, Error>& failed_once,
                                 size_t i = 0, size_t count = 1);

// `salient explain` on a text model: every input tokenized and predicted, every method run at the
// embedding layer (`request.embedding_layer`, else the model's nn.Embedding), and under
// out_dir/<stem>/: <method>.npy (token scores [L], float32), <method>.html, <method>.png and
// explanation.json (last, atomically). Methods that fail are listed as for images.
std::vector<ExplainedInput> explain_text(Model& model, const std::vector<TextInput>& inputs, const ExplainRequest& request,
                                         MethodList& methods, std::vector<Error>* failures = nullptr);

}  // namespace salient
