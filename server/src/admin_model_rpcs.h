// AdminService's model history, status and rollback calls (ListModels, GetModelStatus, Rollback,
// ClearFallback, InjectMiscalibration), kept apart from the service class (grpc_services.cc) so
// that the service's transport and auth can change without touching them.
// Internal to server/. Thread-safety: called from gRPC's synchronous threads; they lock only
// cold-path mutexes (calibration_mu, the state store's).
#pragma once

#include <grpcpp/grpcpp.h>

#include "qsig/v1/signal.grpc.pb.h"
#include "server_state.h"

namespace qsig::server {

grpc::Status ListModelsRpc(ServerState& state, const v1::ListModelsRequest& req,
                           v1::ListModelsResponse* resp);
grpc::Status GetModelStatusRpc(ServerState& state, const v1::GetModelStatusRequest& req,
                               v1::GetModelStatusResponse* resp);
grpc::Status RollbackRpc(ServerState& state, const v1::RollbackRequest& req,
                         v1::RollbackResponse* resp);
grpc::Status ClearFallbackRpc(ServerState& state, const v1::ClearFallbackRequest& req,
                              v1::ClearFallbackResponse* resp);
grpc::Status InjectMiscalibrationRpc(ServerState& state, const v1::InjectMiscalibrationRequest& req,
                                     v1::InjectMiscalibrationResponse* resp);

}  // namespace qsig::server
