#pragma once
// The service's workers: a bounded queue of tasks and N threads, each owning its own instance of
// every model (a Model is not shared between threads: it freezes lazily and carries a target's
// output reduction while one runs). Tasks are cancelled between chunks through their progress
// callback, by a caller (DELETE a job), by their deadline (--timeout) or by shutdown.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/model.hpp"

namespace salient::serve {

using Clock = std::chrono::steady_clock;

class Task {
 public:
  enum class State { Queued, Running, Done, Failed, Cancelled };
  using Work = std::function<void(Model& model, Task& task)>;

  Task(std::string model, Work work, Clock::duration timeout)
      : model_(std::move(model)), work_(std::move(work)), created_(Clock::now()), deadline_(created_ + timeout) {}

  const std::string& model() const { return model_; }
  // Called by the work between chunks (through the methods' progress): throws salient::Cancelled
  // when the task was cancelled or is past its deadline.
  void checkpoint();
  void set_progress(const std::string& what, double fraction);
  // Asks the task to stop (a queued task never starts; a running one stops at its next checkpoint).
  void cancel(const std::string& why);
  // Waits until the task ends or `until`; true when it ended.
  bool wait_until(Clock::time_point until);
  State state() const;
  bool timed_out() const { return timed_out_; }
  std::string error() const;        // Failed / Cancelled: why
  bool bad_input() const;           // Failed on a salient::Error of the input (a 400, not a 500)
  nlohmann::json progress() const;  // {what: fraction}
  double seconds() const;           // running time so far (or in all)
  Clock::time_point deadline() const { return deadline_; }

 private:
  friend class Pool;
  // Runs the work, then calls `release` (the pool frees the worker) and only then publishes the end.
  void run(Model& model, const std::function<void()>& release);
  std::string cancel_reason() const;
  void finish(State s, std::string error = "", bool bad_input = false);

  std::string model_;
  Work work_;
  Clock::time_point created_, deadline_, started_, finished_;
  mutable std::mutex mutex_;
  std::condition_variable done_;
  State state_ = State::Queued;
  std::string error_, cancel_reason_;
  bool bad_input_ = false;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> timed_out_{false};
  std::map<std::string, double> progress_;
};

class Pool {
 public:
  // Loads `workers` instances of each model (name, path); the threads start with start(), so the
  // caller may first read and describe instance(0, name) alone. Throws salient::Error.
  Pool(int workers, size_t queue, const std::vector<std::pair<std::string, std::string>>& models,
       const ModelOptions& options);
  void start();
  ~Pool();
  // Queues `task` for its model; false when the queue is full (the caller answers 503).
  bool submit(const std::shared_ptr<Task>& task);
  // Stops taking tasks, cancels queued and running ones, joins the workers.
  void stop();
  size_t depth() const;
  int busy() const { return busy_.load(); }
  int workers() const { return static_cast<int>(threads_.size()); }
  // Worker `w`'s instance of model `name`: only before start() (describing the models).
  Model& instance(size_t w, const std::string& name) { return *models_.at(w).at(name); }

 private:
  void loop(size_t worker);
  std::vector<std::map<std::string, std::unique_ptr<Model>>> models_;  // [worker][name]
  std::vector<std::thread> threads_;
  mutable std::mutex mutex_;
  std::mutex join_mutex_;
  std::condition_variable ready_;
  std::deque<std::shared_ptr<Task>> queue_;
  std::vector<std::shared_ptr<Task>> running_;
  size_t capacity_;
  bool stopping_ = false;
  std::atomic<int> busy_{0};
};

}  // namespace salient::serve
