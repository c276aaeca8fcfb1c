// oneDNN's int8 LSTM primitive on the LSTM-A shape (input 32, hidden 64, 1 layer, window 32,
// batch 1), as a peer for qsig's INT8 LSTM (qsig_bench_models BM_LstmA_Int8RunFullWindow: the
// same stateless 32-step window). One call = the whole window; items = MACs (32 steps x 4 gates x
// 64 x (32 + 64)).
//
// BM_LstmA_DnnlInt8: u8 src_layer / src_iter, s8 weights (reordered once from f32 with
// rnn_weights_qparams, per gate-channel scales), f32 bias and cell state, u8 dst. BM_LstmA_DnnlF32:
// the same primitive in f32. Everything (primitive, memory, scratchpad) is created before the
// timed loop, which only calls execute() + wait(). oneDNN is built with OpenMP here: run with
// OMP_NUM_THREADS=1 for batch-1 latency on a shared 2-vCPU machine.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace qsig::quant {
namespace {

constexpr int kT = 32, kIn = 32, kHidden = 64, kGates = 4;

void FillRandom(dnnl::memory& m, std::mt19937& rng) {
  const size_t n = m.get_desc().get_size();
  auto* p = static_cast<uint8_t*>(m.get_data_handle());
  if (m.get_desc().data_type() == dnnl::memory::data_type::f32) {
    std::uniform_real_distribution<float> d(-0.5f, 0.5f);
    auto* f = reinterpret_cast<float*>(p);
    for (size_t i = 0; i < n / sizeof(float); ++i) f[i] = d(rng);
  } else {
    std::uniform_int_distribution<int> d(0, 255);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(d(rng));
  }
}

void RunLstm(benchmark::State& state, bool int8) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream strm(eng);
    std::mt19937 rng(5);
    const dt data_t = int8 ? dt::u8 : dt::f32;
    const dnnl::memory::desc src_layer({kT, 1, kIn}, data_t, tag::tnc);
    const dnnl::memory::desc src_iter({1, 1, 1, kHidden}, data_t, tag::ldnc);
    const dnnl::memory::desc src_iter_c({1, 1, 1, kHidden}, dt::f32, tag::ldnc);
    const dnnl::memory::desc wl_any({1, 1, kIn, kGates, kHidden}, int8 ? dt::s8 : dt::f32,
                                    tag::any);
    const dnnl::memory::desc wi_any({1, 1, kHidden, kGates, kHidden}, int8 ? dt::s8 : dt::f32,
                                    tag::any);
    const dnnl::memory::desc bias({1, 1, kGates, kHidden}, dt::f32, tag::ldgo);
    const dnnl::memory::desc dst_layer({kT, 1, kHidden}, data_t, tag::tnc);
    const dnnl::memory::desc dst_iter({1, 1, 1, kHidden}, data_t, tag::ldnc);
    const dnnl::memory::desc dst_iter_c({1, 1, 1, kHidden}, dt::f32, tag::ldnc);

    // Quantization parameters, for the primitive and (with its own scratchpad: a user scratchpad
    // would have to be passed to its execute) for the weights' reorder. Two objects: a
    // dnnl::primitive_attr copy shares one handle.
    auto make_attr = [int8](bool user_scratchpad) {
      dnnl::primitive_attr a;
      if (user_scratchpad) a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (int8) {
        // u8 = x / (1/64) + 128: data in [-2, 2); weight scales per (gate, channel) of ldigo.
        a.set_rnn_data_qparams(64.0f, 128.0f);
        a.set_rnn_weights_qparams((1 << 3) | (1 << 4),
                                  std::vector<float>(kGates * kHidden, 127.0f / 0.5f));
      }
      return a;
    };
    const dnnl::primitive_attr attr = make_attr(true), reorder_attr = make_attr(false);
    const dnnl::lstm_forward::desc d(
        dnnl::prop_kind::forward_inference, dnnl::rnn_direction::unidirectional_left2right,
        src_layer, src_iter, src_iter_c, wl_any, wi_any, bias, dst_layer, dst_iter, dst_iter_c);
    const dnnl::lstm_forward::primitive_desc pd(d, attr, eng);
    state.SetLabel(pd.impl_info_str());

    // Weights: f32 ldigo from the user, quantized by the reorder (int8) as oneDNN documents.
    dnnl::memory user_wl({{1, 1, kIn, kGates, kHidden}, dt::f32, tag::ldigo}, eng);
    dnnl::memory user_wi({{1, 1, kHidden, kGates, kHidden}, dt::f32, tag::ldigo}, eng);
    FillRandom(user_wl, rng);
    FillRandom(user_wi, rng);
    dnnl::memory wl(pd.weights_layer_desc(), eng), wi(pd.weights_iter_desc(), eng);
    dnnl::reorder(dnnl::reorder::primitive_desc(user_wl, wl, reorder_attr))
        .execute(strm, user_wl, wl);
    dnnl::reorder(dnnl::reorder::primitive_desc(user_wi, wi, reorder_attr))
        .execute(strm, user_wi, wi);
    strm.wait();

    dnnl::memory m_src(src_layer, eng), m_si(src_iter, eng), m_sic(src_iter_c, eng),
        m_bias(bias, eng), m_dst(dst_layer, eng), m_di(dst_iter, eng), m_dic(dst_iter_c, eng),
        m_scratch(pd.scratchpad_desc(), eng);
    for (dnnl::memory* m : {&m_src, &m_si, &m_sic, &m_bias}) FillRandom(*m, rng);
    dnnl::lstm_forward prim(pd);
    const std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC_LAYER, m_src},     {DNNL_ARG_SRC_ITER, m_si},   {DNNL_ARG_SRC_ITER_C, m_sic},
        {DNNL_ARG_WEIGHTS_LAYER, wl},    {DNNL_ARG_WEIGHTS_ITER, wi}, {DNNL_ARG_BIAS, m_bias},
        {DNNL_ARG_DST_LAYER, m_dst},     {DNNL_ARG_DST_ITER, m_di},   {DNNL_ARG_DST_ITER_C, m_dic},
        {DNNL_ARG_SCRATCHPAD, m_scratch}};
    for (auto _ : state) {
      prim.execute(strm, args);
      strm.wait();
      benchmark::DoNotOptimize(m_dst.get_data_handle());
      benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * kT * kGates * kHidden * (kIn + kHidden));
  } catch (const dnnl::error& e) {
    state.SkipWithError((std::string("oneDNN: ") + e.what()).c_str());
  }
}

BENCHMARK_CAPTURE(RunLstm, Int8, true)->Name("BM_LstmA_DnnlInt8")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(RunLstm, F32, false)->Name("BM_LstmA_DnnlF32")->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace qsig::quant
