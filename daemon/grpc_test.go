package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/opmond/opmond/daemon/grpcserver/grpctest"
	pb "github.com/opmond/opmond/daemon/opmonrpc"
)

// startGRPCDaemon runs a daemon with [grpc] on loopback: internal TLS from
// store, or plaintext when store is nil.
func startGRPCDaemon(t *testing.T, store *grpctest.Store) *testDaemon {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.TLS = "none"
	if store != nil {
		cfg.GRPC.TLS = "internal"
		cfg.GRPC.Keystore, cfg.GRPC.PasswordFile = store.Keystore, store.PasswordFile
	}
	return startDaemon(t, cfg, nil)
}

// grpcClient dials the daemon's gRPC listener as the security server UI
// does: over TLS (tlsCfg) or plaintext (nil).
func grpcClient(t *testing.T, td *testDaemon, tlsCfg *tls.Config) pb.OpMonitorServiceClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(td.GRPCAddr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewOpMonitorServiceClient(conn)
}

func callIntervals(c pb.OpMonitorServiceClient, req *pb.GetOperationalDataIntervalsReq) (*pb.GetOperationalDataIntervalsResp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.GetOperationalDataIntervals(ctx, req)
}

// spec is one stored record as the test's own counting sees it.
type spec struct {
	typ, client, provider, code, version string
	reqIn                                int64
	ok                                   bool
}

func (s spec) json() map[string]any {
	m := jrec("securityServerType", s.typ, "requestInTs", s.reqIn, "responseOutTs", s.reqIn+50, "succeeded", s.ok, "serviceCode", s.code)
	withParty(m, "client", s.client)
	withParty(m, "service", s.provider)
	if s.version != "" {
		m["serviceVersion"] = s.version
	}
	return m
}

// filter is a request's filter as the test applies it to specs.
type filter struct {
	typ                       string // "", "Client", "Producer"
	member                    string // slash form, "" = none
	svcProvider, svcCode, ver string // svcCode "" = no service filter; ver "" = any
}

func (f filter) keep(s spec) bool {
	if f.typ != "" && s.typ != f.typ {
		return false
	}
	if f.member != "" && s.client != f.member && s.provider != f.member {
		return false
	}
	if f.svcCode != "" && (s.provider != f.svcProvider || s.code != f.svcCode || (f.ver != "" && s.version != f.ver)) {
		return false
	}
	return true
}

func (f filter) request(from, to int64, minutes int32) *pb.GetOperationalDataIntervalsReq {
	req := &pb.GetOperationalDataIntervalsReq{RecordsFrom: from, RecordsTo: to, IntervalInMinutes: minutes}
	switch f.typ {
	case "Client":
		req.SecurityServerType = pb.SecurityServerType_CLIENT.Enum()
	case "Producer":
		req.SecurityServerType = pb.SecurityServerType_PRODUCER.Enum()
	}
	if f.member != "" {
		p := strings.Split(f.member, "/")
		req.MemberId = &pb.ClientIdProto{XroadInstance: p[0], MemberClass: p[1], MemberCode: p[2], ObjectType: pb.XRoadObjectType_MEMBER}
		if len(p) == 4 {
			req.MemberId.SubsystemCode = proto.String(p[3])
			req.MemberId.ObjectType = pb.XRoadObjectType_SUBSYSTEM
		}
	}
	if f.svcCode != "" {
		p := strings.Split(f.svcProvider, "/")
		req.ServiceId = &pb.ServiceIdProto{XroadInstance: p[0], MemberClass: p[1], MemberCode: p[2], ServiceCode: f.svcCode}
		if len(p) == 4 {
			req.ServiceId.SubsystemCode = p[3]
		}
		if f.ver != "" {
			req.ServiceId.ServiceVersion = proto.String(f.ver)
		}
	}
	return req
}

type bucket struct{ startMs, success, failure int64 }

// expect is §6 written out: buckets start..end inclusive, each counting
// candidates in [b, b+step), candidates being start <= requestInTs <= end.
func expect(specs []spec, f filter, from, to int64, minutes int32) []bucket {
	if from > to {
		return nil
	}
	step := int64(minutes) * 60000
	floor := func(v int64) int64 {
		q := v / step
		if v%step != 0 && v < 0 {
			q--
		}
		return q * step
	}
	start, end := floor(from), floor(to)+step
	var out []bucket
	for b := start; b <= end; b += step {
		bk := bucket{startMs: b}
		for _, s := range specs {
			if !f.keep(s) || s.reqIn < start || s.reqIn > end || s.reqIn < b || s.reqIn >= b+step {
				continue
			}
			if s.ok {
				bk.success++
			} else {
				bk.failure++
			}
		}
		out = append(out, bk)
	}
	return out
}

func gotBuckets(t *testing.T, resp *pb.GetOperationalDataIntervalsResp) []bucket {
	t.Helper()
	var out []bucket
	for _, iv := range resp.GetOperationalDataInterval() {
		ts := iv.GetTimeIntervalStart()
		if ts.GetNanos() != 0 {
			t.Errorf("timeIntervalStart %v has nanos", ts)
		}
		out = append(out, bucket{ts.GetSeconds() * 1000, iv.GetSuccessCount(), iv.GetFailureCount()})
	}
	return out
}

const (
	minute = int64(60000)
	// gbase is aligned to 5 minutes.
	gbase = int64(1_760_000_100_000)
)

// trafficSpecs are records across half an hour: random ones off minute
// edges, and ones placed on the edges the cases below look at.
func trafficSpecs() []spec {
	clients := []string{"EE/GOV/1/app", "EE/GOV/1", "EE/COM/2/crm"}
	providers := []string{"EE/GOV/2/svc", "EE/GOV/2", "EE/GOV/1/app"}
	codes := []string{"getX", "getY"}
	versions := []string{"", "v1", "v2"}
	types := []string{"Client", "Producer"}
	rng := rand.New(rand.NewPCG(13, 6))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	var specs []spec
	for range 400 {
		at := gbase - 2*minute + rng.Int64N(35*minute)
		if at%minute == 0 {
			at += 7
		}
		specs = append(specs, spec{pick(types), pick(clients), pick(providers), pick(codes), pick(versions), at, rng.IntN(5) != 0})
	}
	edge := func(at int64, ok bool, typ, client, provider, code, version string) {
		specs = append(specs, spec{typ, client, provider, code, version, at, ok})
	}
	for _, at := range []int64{gbase, gbase + 5*minute, gbase + 13*minute, gbase + 20*minute} {
		edge(at, true, "Client", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "v1")
		edge(at, false, "Producer", "EE/GOV/1", "EE/GOV/2", "getX", "")
		edge(at-1, true, "Client", "EE/COM/2/crm", "EE/GOV/1/app", "getY", "v2")
		edge(at+1, false, "Client", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "v2")
	}
	return specs
}

// TestGRPCIntervals stores records through /store_data and checks every
// filter of GetOperationalDataIntervals over real TLS with a key store made
// as a security server makes it.
func TestGRPCIntervals(t *testing.T) {
	ks := grpctest.Make(t, t.TempDir(), "xroad-grpc-internal", "Q2hvc2VuX3Bhc3N3b3Jk-_", true)
	t.Logf("key store made by keytool: %v", ks.Keytool)
	td := startGRPCDaemon(t, &ks)
	specs := trafficSpecs()
	var batch []map[string]any
	for _, s := range specs {
		batch = append(batch, s.json())
	}
	td.store(batch...)
	c := grpcClient(t, td, grpctest.ClientTLS(ks, &ks.Cert))

	filters := map[string]filter{
		"all":                          {},
		"type Client":                  {typ: "Client"},
		"type Producer":                {typ: "Producer"},
		"member with subsystem":        {member: "EE/GOV/1/app"},
		"member without subsystem":     {member: "EE/GOV/1"},
		"other member":                 {member: "EE/COM/2/crm"},
		"member and type":              {member: "EE/GOV/1/app", typ: "Producer"},
		"service without version":      {svcProvider: "EE/GOV/2/svc", svcCode: "getX"},
		"service with version":         {svcProvider: "EE/GOV/2/svc", svcCode: "getX", ver: "v1"},
		"service of a member provider": {svcProvider: "EE/GOV/2", svcCode: "getX"},
		"service and type":             {svcProvider: "EE/GOV/1/app", svcCode: "getY", ver: "v2", typ: "Client"},
		"unknown service":              {svcProvider: "EE/GOV/2/svc", svcCode: "getZ"},
	}
	windows := []struct {
		name     string
		from, to int64
		minutes  int32
	}{
		// As the UI sends them: the end minute + 59.999 s.
		{"1 min, UI range", gbase + 3*minute + 17000, gbase + 12*minute + 59999, 1},
		{"5 min, UI range", gbase, gbase + 19*minute + 59999, 5},
		{"1 min, to on an edge", gbase + 5*minute, gbase + 13*minute, 1},
		{"5 min, from before an edge", gbase - 1, gbase + 10*minute, 5},
		{"1 min, one bucket", gbase + 20*minute, gbase + 20*minute, 1},
	}
	sawLast := false
	for fname, f := range filters {
		for _, w := range windows {
			resp, err := callIntervals(c, f.request(w.from, w.to, w.minutes))
			if err != nil {
				t.Fatalf("%s, %s: %v", fname, w.name, err)
			}
			got, want := gotBuckets(t, resp), expect(specs, f, w.from, w.to, w.minutes)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s, %s:\ngot  %v\nwant %v", fname, w.name, got, want)
			}
			if last := got[len(got)-1]; last.success+last.failure > 0 {
				sawLast = true
			}
		}
	}
	if !sawLast {
		t.Error("no case counted a record in the inclusive last bucket")
	}

	// The inclusive last bucket written out by hand, so the reference above
	// cannot share a mistake with the server: from 12m to 12m59.999s in
	// 1-minute buckets is the bucket 12m plus the extra bucket 13m, which
	// counts exactly the records at 13m (one Client success of
	// EE/GOV/1/app, one Producer failure of EE/GOV/1), not the one at 13m+1.
	for _, hc := range []struct {
		f    filter
		last bucket
	}{
		{filter{member: "EE/GOV/1/app"}, bucket{gbase + 13*minute, 1, 0}},
		{filter{member: "EE/GOV/1"}, bucket{gbase + 13*minute, 0, 1}},
		{filter{}, bucket{gbase + 13*minute, 1, 1}},
	} {
		resp, err := callIntervals(c, hc.f.request(gbase+12*minute, gbase+12*minute+59999, 1))
		if err != nil {
			t.Fatal(err)
		}
		got := gotBuckets(t, resp)
		if len(got) != 2 || got[0].startMs != gbase+12*minute || got[1] != hc.last {
			t.Errorf("%+v: buckets %v, want 12m and %v", hc.f, got, hc.last)
		}
	}

	// recordsFrom > recordsTo: an empty answer, not an error.
	resp, err := callIntervals(c, filter{}.request(gbase+minute, gbase, 1))
	if err != nil || len(resp.GetOperationalDataInterval()) != 0 {
		t.Errorf("from > to: %v, %v", resp, err)
	}
	// An explicit SECURITY_SERVER_TYPE_UNSPECIFIED, or a value this version
	// does not know, is no filter (as upstream has it).
	for _, typ := range []pb.SecurityServerType{pb.SecurityServerType_SECURITY_SERVER_TYPE_UNSPECIFIED, 7} {
		req := filter{}.request(gbase, gbase+10*minute, 5)
		req.SecurityServerType = typ.Enum()
		resp, err = callIntervals(c, req)
		if err != nil || fmt.Sprint(gotBuckets(t, resp)) != fmt.Sprint(expect(specs, filter{}, gbase, gbase+10*minute, 5)) {
			t.Errorf("type %v: %v %v", typ, resp, err)
		}
	}
	for _, bad := range []*pb.GetOperationalDataIntervalsReq{
		{RecordsFrom: gbase, RecordsTo: gbase + minute, IntervalInMinutes: 0},
		{RecordsFrom: gbase, RecordsTo: gbase + minute, IntervalInMinutes: -5},
		{RecordsFrom: 0, RecordsTo: 1 << 62, IntervalInMinutes: 1},
		{RecordsFrom: 0, RecordsTo: 1<<63 - 1, IntervalInMinutes: 1 << 30},
	} {
		if _, err := callIntervals(c, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", bad, err)
		}
	}

	// Metrics per RPC: calls by code and their latency.
	_, _, body := doRequest(t, "GET", td.adminURL+"/metrics", "", nil)
	m := string(body)
	okCalls := regexp.MustCompile(`opmond_grpc_requests_total\{code="OK",method="GetOperationalDataIntervals"\} (\d+)`).FindStringSubmatch(m)
	if okCalls == nil {
		t.Fatalf("no OK call count in metrics:\n%s", m)
	}
	if n, _ := strconv.Atoi(okCalls[1]); n != len(filters)*len(windows)+6 {
		t.Errorf("OK calls %d, want %d", n, len(filters)*len(windows)+6)
	}
	for _, want := range []string{
		`opmond_grpc_requests_total{code="InvalidArgument",method="GetOperationalDataIntervals"} 4`,
		`opmond_grpc_request_duration_seconds_count{method="GetOperationalDataIntervals"} ` + strconv.Itoa(len(filters)*len(windows)+10),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestGRPCRefusesOtherClients: only a client presenting the store's own
// certificate gets an answer.
func TestGRPCRefusesOtherClients(t *testing.T) {
	dir := t.TempDir()
	ks := grpctest.Make(t, dir, "grpc", "pw-one", true)
	other := grpctest.Make(t, dir, "other", "pw-two", false)
	td := startGRPCDaemon(t, &ks)
	req := filter{}.request(gbase, gbase, 1)
	if _, err := callIntervals(grpcClient(t, td, grpctest.ClientTLS(ks, &ks.Cert)), req); err != nil {
		t.Fatalf("the store's own certificate: %v", err)
	}
	for name, cfg := range map[string]*tls.Config{
		"no certificate":      grpctest.ClientTLS(ks, nil),
		"another certificate": grpctest.ClientTLS(ks, &other.Cert),
		"plaintext":           nil,
	} {
		_, err := callIntervals(grpcClient(t, td, cfg), req)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want Unavailable", name, err)
		}
	}
	// A TLS 1.1 client is refused too.
	old := grpctest.ClientTLS(ks, &ks.Cert)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := callIntervals(grpcClient(t, td, old), req); status.Code(err) != codes.Unavailable {
		t.Errorf("TLS 1.1: %v", err)
	}
	_, _, body := doRequest(t, "GET", td.adminURL+"/metrics", "", nil)
	if n := regexp.MustCompile(`opmond_grpc_tls_handshake_failures_total (\d+)`).FindStringSubmatch(string(body)); n == nil || n[1] == "0" {
		t.Errorf("handshake failures not counted: %v", n)
	}
	if !strings.Contains(td.logs.String(), "gRPC TLS handshake failed") {
		t.Error("handshake failures not logged")
	}
}

// TestGRPCPlaintext: tls = "none" serves without TLS.
func TestGRPCPlaintext(t *testing.T) {
	td := startGRPCDaemon(t, nil)
	td.store(spec{"Client", "EE/GOV/1/app", "EE/GOV/2/svc", "getX", "", gbase + 30000, true}.json())
	resp, err := callIntervals(grpcClient(t, td, nil), filter{}.request(gbase, gbase, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := gotBuckets(t, resp); fmt.Sprint(got) != fmt.Sprint([]bucket{{gbase, 1, 0}, {gbase + minute, 0, 0}}) {
		t.Errorf("got %v", got)
	}
	// Requests are small; a large one is refused without being handled.
	big := filter{member: "EE/GOV/" + strings.Repeat("9", 100<<10)}.request(gbase, gbase, 1)
	if _, err := callIntervals(grpcClient(t, td, nil), big); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 100 KiB request: %v", err)
	}
}

// TestGRPCReload: a new key store and password (as xroad-base makes them
// when it restarts) are taken on SIGHUP and, without one, from the disk; a
// broken pair keeps the old one.
func TestGRPCReload(t *testing.T) {
	defer func(v time.Duration) { grpcWatchInterval = v }(grpcWatchInterval)
	grpcWatchInterval = 20 * time.Millisecond
	dir, other := t.TempDir(), t.TempDir()
	ks := grpctest.Make(t, dir, "grpc", "first", false)
	td := startGRPCDaemon(t, &ks)
	req := filter{}.request(gbase, gbase, 1)
	works := func(s grpctest.Store) error {
		_, err := callIntervals(grpcClient(t, td, grpctest.ClientTLS(s, &s.Cert)), req)
		return err
	}
	if err := works(ks); err != nil {
		t.Fatal(err)
	}
	replace := func(password string) grpctest.Store {
		n := grpctest.Make(t, other, "grpc", password, false)
		for from, to := range map[string]string{n.Keystore: ks.Keystore, n.PasswordFile: ks.PasswordFile} {
			if err := os.Rename(from, to); err != nil {
				t.Fatal(err)
			}
		}
		n.Keystore, n.PasswordFile = ks.Keystore, ks.PasswordFile
		return n
	}

	// A wrong password on reload keeps the old material.
	ks.WritePasswordFile(t, "not-it")
	if err := td.Reload(); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("reload with a wrong password: %v", err)
	}
	if err := works(ks); err != nil {
		t.Errorf("old key store after a failed reload: %v", err)
	}

	second := replace("second")
	if err := td.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := works(second); err != nil {
		t.Errorf("new key store after reload: %v", err)
	}
	if err := works(ks); status.Code(err) != codes.Unavailable {
		t.Errorf("old certificate after reload: %v", err)
	}

	third := replace("third")
	deadline := time.Now().Add(10 * time.Second)
	for works(third) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the key store changed on disk was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGRPCCloseWithOpenConnection: Close does not wait for a client that
// keeps its channel open, as the security server UI does.
func TestGRPCCloseWithOpenConnection(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.GRPC.Listen, cfg.GRPC.TLS = "127.0.0.1:0", "none"
	d, err := New(cfg, Options{LogWriter: io.Discard, Listener: mustListen(t), AdminListener: mustListen(t)})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	conn, err := grpc.NewClient(d.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := callIntervals(pb.NewOpMonitorServiceClient(conn), filter{}.request(gbase, gbase, 1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for an idle gRPC connection")
	}
	if _, err := callIntervals(pb.NewOpMonitorServiceClient(conn), filter{}.request(gbase, gbase, 1)); status.Code(err) != codes.Unavailable {
		t.Errorf("after Close: %v", err)
	}
}

// TestGRPCCheckFiles: check-config loads the key store with its password
// when the gRPC interface uses TLS, and not otherwise.
func TestGRPCCheckFiles(t *testing.T) {
	dir := t.TempDir()
	ks := grpctest.Make(t, dir, "grpc", "check-me", false)
	cfg := testConfig(t, dir)
	cfg.GRPC.Listen, cfg.GRPC.Keystore, cfg.GRPC.PasswordFile = "localhost:2081", ks.Keystore, ks.PasswordFile
	if err := cfg.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	ks.WritePasswordFile(t, "not-me")
	err := cfg.CheckFiles()
	if err == nil || !strings.HasPrefix(err.Error(), "grpc.keystore = ") || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("wrong password: %v", err)
	}
	cfg.GRPC.TLS = "none"
	if err := cfg.CheckFiles(); err != nil {
		t.Errorf("tls = none: %v", err)
	}
	cfg.GRPC.TLS, cfg.GRPC.Listen = "internal", ""
	if err := cfg.CheckFiles(); err != nil {
		t.Errorf("gRPC off: %v", err)
	}
}
