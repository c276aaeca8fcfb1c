// The LibTorch FP32 peer: torch::nn::LSTM / torch::nn::Linear holding the spec's weights, run
// under NoGradGuard with one intra-op thread. Compiled only with QSIG_WITH_TORCH.
#include "torch_peer.h"

#include <torch/torch.h>

#include <cstring>
#include <vector>

namespace qsig::models::bench {
namespace {

void CopyInto(torch::Tensor t, const std::vector<float>& v) {
  auto src = torch::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())},
                              torch::kFloat32);
  t.view({-1}).copy_(src);
}

class Peer final : public TorchPeer {
 public:
  explicit Peer(const ModelSpec& s) : spec_(s) {
    torch::NoGradGuard no_grad;
    if (!s.lstm.empty()) {
      lstm_ = torch::nn::LSTM(torch::nn::LSTMOptions(s.input_size, s.lstm[0].hidden_size)
                                  .num_layers(static_cast<int64_t>(s.lstm.size()))
                                  .batch_first(true));
      for (size_t l = 0; l < s.lstm.size(); ++l) {
        const std::string k = std::to_string(l);
        auto params = lstm_->named_parameters();
        CopyInto(params["weight_ih_l" + k], s.lstm[l].w_ih);
        CopyInto(params["weight_hh_l" + k], s.lstm[l].w_hh);
        CopyInto(params["bias_ih_l" + k], s.lstm[l].b_ih);
        CopyInto(params["bias_hh_l" + k], s.lstm[l].b_hh);
      }
      lstm_->eval();
    }
    for (const LinearLayer& ly : s.layers) {
      torch::nn::Linear lin(ly.in, ly.out);
      CopyInto(lin->weight, ly.weight);
      CopyInto(lin->bias, ly.bias);
      lin->eval();
      linear_.push_back(lin);
      act_.push_back(ly.activation);
    }
    const size_t n = static_cast<size_t>(s.window) * s.input_size;
    xn_.resize(n);
  }

  float Run(const float* window) override {
    torch::NoGradGuard no_grad;
    const ModelSpec& s = spec_;
    const int in = s.input_size;
    const bool norm = !s.feature_mean.empty();
    const int t0 = s.lstm.empty() ? s.window - 1 : 0;  // an MLP reads the last timestep
    const int steps = s.window - t0;
    for (int t = 0; t < steps; ++t) {
      for (int k = 0; k < in; ++k) {
        const float v = window[static_cast<size_t>(t0 + t) * in + k];
        const float sd = norm ? s.feature_std[static_cast<size_t>(k)] : 1.0f;
        xn_[static_cast<size_t>(t) * in + k] =
            norm ? (v - s.feature_mean[static_cast<size_t>(k)]) / (sd != 0.0f ? sd : 1.0f) : v;
      }
    }
    torch::Tensor x;
    if (!s.lstm.empty()) {
      x = torch::from_blob(xn_.data(), {1, steps, in}, torch::kFloat32);
      auto out = std::get<0>(lstm_->forward(x));
      x = out.select(1, steps - 1);
    } else {
      x = torch::from_blob(xn_.data(), {1, in}, torch::kFloat32);
    }
    for (size_t k = 0; k < linear_.size(); ++k) {
      x = linear_[k]->forward(x);
      switch (act_[k]) {
        case Activation::kNone:
          break;
        case Activation::kRelu:
          x = torch::relu(x);
          break;
        case Activation::kTanh:
          x = torch::tanh(x);
          break;
        case Activation::kSigmoid:
          x = torch::sigmoid(x);
          break;
      }
    }
    return x.item<float>();
  }

 private:
  ModelSpec spec_;
  torch::nn::LSTM lstm_{nullptr};
  std::vector<torch::nn::Linear> linear_;
  std::vector<Activation> act_;
  std::vector<float> xn_;
};

}  // namespace

std::unique_ptr<TorchPeer> MakeTorchPeer(const ModelSpec& spec, std::string*) {
  static const bool once = [] {
    at::set_num_threads(1);
    at::set_num_interop_threads(1);  // may be set only once per process
    return true;
  }();
  (void)once;
  return std::make_unique<Peer>(spec);
}

std::string TorchDescription() {
  return std::string("libtorch ") + TORCH_VERSION + ", intra-op threads " +
         std::to_string(at::get_num_threads());
}

}  // namespace qsig::models::bench
