package daemon

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/opmond/opmond/daemon/grpcserver/grpctest"
	pb "github.com/opmond/opmond/daemon/opmonrpc"
)

// BenchmarkGRPCIntervals: the security server UI's traffic graph over the
// whole benchmark database (about 50 minutes of requests) in 1-minute
// buckets, over mutual TLS on one kept channel, as the UI refreshes it.
func BenchmarkGRPCIntervals(b *testing.B) {
	dir := benchDB(b)
	ks := grpctest.Make(b, b.TempDir(), "grpc", "bench-password", false)
	cfg := Default()
	cfg.OpMonitor.Database = filepath.Join(dir, "opmonitor.db")
	cfg.GlobalConf.Directory = filepath.Join(b.TempDir(), "none")
	cfg.OpMonitor.KeepRecordsForDays = 36500
	cfg.Log.Level = "warn"
	cfg.Admin.Listen = ""
	cfg.GRPC.Listen, cfg.GRPC.TLS = "127.0.0.1:0", "internal"
	cfg.GRPC.Keystore, cfg.GRPC.PasswordFile = ks.Keystore, ks.PasswordFile
	td := startDaemonTB(b, cfg)
	conn, err := grpc.NewClient(td.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(grpctest.ClientTLS(ks, &ks.Cert))))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewOpMonitorServiceClient(conn)
	for name, req := range map[string]*pb.GetOperationalDataIntervalsReq{
		"all": {RecordsFrom: benchBaseTs * 1000, RecordsTo: (benchBaseTs+3600)*1000 - 1, IntervalInMinutes: 1},
		"producer": {RecordsFrom: benchBaseTs * 1000, RecordsTo: (benchBaseTs+3600)*1000 - 1, IntervalInMinutes: 5,
			SecurityServerType: pb.SecurityServerType_PRODUCER.Enum()},
	} {
		b.Run(name, func(b *testing.B) {
			var total int64
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				resp, err := c.GetOperationalDataIntervals(ctx, req)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				total = 0
				for _, iv := range resp.GetOperationalDataInterval() {
					total += iv.GetSuccessCount() + iv.GetFailureCount()
				}
			}
			b.ReportMetric(float64(total), "records")
		})
	}
}
