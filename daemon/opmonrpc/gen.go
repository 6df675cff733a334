// Package opmonrpc is the Go code generated from opmond's own copy of
// X-Road's OpMonitorService protocol (opmonitor_service.proto,
// common_messages.proto): package, message names and field numbers are
// upstream's wire format. `make proto` regenerates it; TestGeneratedUpToDate
// fails when the committed code and the .proto files drift apart.
package opmonrpc
