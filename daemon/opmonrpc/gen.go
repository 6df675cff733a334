// Package opmonrpc is the Go code generated from opmond's copy of X-Road's
// OpMonitorService protocol (opmonitor_service.proto, common_messages.proto).
// `make proto` regenerates it; TestGeneratedUpToDate fails when it drifts.
package opmonrpc

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative common_messages.proto opmonitor_service.proto
