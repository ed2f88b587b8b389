#include "pool.hpp"

#include <algorithm>

#include <ATen/Parallel.h>

#include "salient/error.hpp"

namespace salient::serve {

void Task::checkpoint() {
  if (cancelled_) throw Cancelled(cancel_reason());
  if (Clock::now() > deadline_) {
    timed_out_ = true;
    throw Cancelled("timed out");
  }
}

std::string Task::cancel_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancel_reason_;
}

void Task::set_progress(const std::string& what, double fraction) {
  std::lock_guard<std::mutex> lock(mutex_);
  progress_[what] = fraction;
}

void Task::cancel(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancel_reason_.empty()) cancel_reason_ = why;
  }
  cancelled_ = true;
}

bool Task::wait_until(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mutex_);
  return done_.wait_until(lock, until, [&] { return state_ != State::Queued && state_ != State::Running; });
}

Task::State Task::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

std::string Task::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

bool Task::bad_input() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bad_input_;
}

nlohmann::json Task::progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return progress_;
}

double Task::seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == State::Queued) return 0.0;
  const auto end = state_ == State::Running ? Clock::now() : finished_;
  return std::chrono::duration<double>(end - started_).count();
}

void Task::finish(State s, std::string error, bool bad_input) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = s;
    error_ = std::move(error);
    bad_input_ = bad_input;
    finished_ = Clock::now();
  }
  done_.notify_all();
}

void Task::run(Model& model, const std::function<void()>& release) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = State::Running;
    started_ = Clock::now();
  }
  State end = State::Done;
  std::string error;
  bool bad_input = false;
  try {
    checkpoint();  // cancelled or expired while queued
    work_(model, *this);
  } catch (const Cancelled& c) {
    end = State::Cancelled;
    error = timed_out_ ? "timed out" : c.what();
  } catch (const Error& e) {
    end = State::Failed;
    error = e.what();
    bad_input = e.kind() == ErrorKind::BadInput;
  } catch (const std::exception& e) {
    end = State::Failed;
    error = one_line(e);
  }
  // The worker is free before anyone hears that the task ended: a client that sends its next
  // request on the answer finds room (it got a 503 now and then: the slot was freed after).
  release();
  finish(end, std::move(error), bad_input);
}

Pool::Pool(int workers, size_t queue, const std::vector<std::pair<std::string, std::string>>& models,
           const ModelOptions& options)
    : capacity_(queue) {
  if (workers < 1) throw Error("--workers must be >= 1, got " + std::to_string(workers));
  if (workers > 64) throw Error("--workers must be <= 64, got " + std::to_string(workers));
  if (models.empty()) throw Error("no model given (--model)");
  models_.resize(static_cast<size_t>(workers));
  for (size_t w = 0; w < models_.size(); ++w)
    for (size_t m = 0; m < models.size(); ++m) {
      ModelOptions o = options;
      if (m > 0) o.metadata_path.clear();  // --metadata names the first model's sidecar
      models_[w][models[m].first] = std::make_unique<Model>(models[m].second, o);
    }
}

Pool::~Pool() { stop(); }

void Pool::start() {
  for (size_t w = 0; w < models_.size(); ++w) threads_.emplace_back([this, w] { loop(w); });
}

bool Pool::submit(const std::shared_ptr<Task>& task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    // Waiting room: the queue beyond the workers that are free now.
    const size_t idle = threads_.size() - static_cast<size_t>(busy_.load());
    if (queue_.size() >= capacity_ + idle) return false;
    queue_.push_back(task);
  }
  ready_.notify_one();
  return true;
}

size_t Pool::depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void Pool::stop() {
  // One caller joins; a concurrent one (a signal's thread and the main thread) waits for it, then
  // finds nothing left to do (two joins of one thread would be undefined).
  std::lock_guard<std::mutex> joining(join_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    for (auto& t : queue_) {
      t->cancel("the server is shutting down");
      t->finish(Task::State::Cancelled, "the server is shutting down");
    }
    queue_.clear();
    for (auto& t : running_) t->cancel("the server is shutting down");
  }
  ready_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void Pool::loop(size_t worker) {
  at::init_num_threads();  // LibTorch's intra-op settings for a thread it did not start
  for (;;) {
    std::shared_ptr<Task> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = queue_.front();
      queue_.pop_front();
      running_.push_back(task);
      ++busy_;
    }
    task->run(*models_[worker].at(task->model()), [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      running_.erase(std::find(running_.begin(), running_.end(), task));
      --busy_;
    });
  }
}

}  // namespace salient::serve
