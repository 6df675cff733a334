package grpcserver

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opmond/opmond/daemon/opmonrpc"
	"github.com/opmond/opmond/schema"
	"github.com/opmond/opmond/storage"
)

// maxBuckets bounds one answer (a year in 1-minute buckets is 525,600).
const maxBuckets = 600_000

type service struct {
	opmonrpc.UnimplementedOpMonitorServiceServer
	db  DB
	log zerolog.Logger
}

// GetOperationalDataIntervals counts records by requestInTs as upstream
// does on this interface (opmon-protocol.md §6): buckets of the interval
// from the one holding recordsFrom to the one holding recordsTo, each
// [b, b+step), plus one more bucket at end = (the last one's start + step)
// that counts only records whose requestInTs is exactly end. storage's
// Intervals has the half-open buckets; the extra one is a second, one-
// millisecond query.
//
// Where upstream cannot match — a service of a member-level provider
// (subsystem_code "") — opmond matches it; upstream's own UI never sends one.
func (s *service) GetOperationalDataIntervals(ctx context.Context, req *opmonrpc.GetOperationalDataIntervalsReq) (*opmonrpc.GetOperationalDataIntervalsResp, error) {
	q, err := intervalQuery(req)
	if err != nil {
		return nil, err
	}
	resp := &opmonrpc.GetOperationalDataIntervalsResp{}
	if req.GetRecordsFrom() > req.GetRecordsTo() {
		return resp, nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ivs, err := s.db.Intervals(ctx, q)
	if err != nil {
		return nil, s.dbError(err)
	}
	end := ivs[len(ivs)-1].StartMs + q.StepMs
	last := q
	last.FromMs, last.ToMs, last.StepMs = end, end, 1
	extra, err := s.db.Intervals(ctx, last)
	if err != nil {
		return nil, s.dbError(err)
	}
	extra[0].StartMs = end
	ivs = append(ivs, extra[0])
	resp.OperationalDataInterval = make([]*opmonrpc.OperationalDataIntervalProto, len(ivs))
	for i, iv := range ivs {
		resp.OperationalDataInterval[i] = &opmonrpc.OperationalDataIntervalProto{
			TimeIntervalStart: timestamppb.New(time.UnixMilli(iv.StartMs)),
			SuccessCount:      iv.Success,
			FailureCount:      iv.Failure,
		}
	}
	return resp, nil
}

// intervalQuery checks the request and turns it into storage's query.
func intervalQuery(req *opmonrpc.GetOperationalDataIntervalsReq) (storage.IntervalQuery, error) {
	if req.GetIntervalInMinutes() <= 0 {
		return storage.IntervalQuery{}, status.Errorf(codes.InvalidArgument, "intervalInMinutes %d is not positive", req.GetIntervalInMinutes())
	}
	step := int64(req.GetIntervalInMinutes()) * 60000
	from, to := req.GetRecordsFrom(), req.GetRecordsTo()
	q := storage.IntervalQuery{FromMs: from, ToMs: to, StepMs: step}
	if from <= to {
		// The extra bucket's start must be representable, and the answer bounded.
		if to > math.MaxInt64-2*step || from < math.MinInt64+step {
			return q, status.Errorf(codes.InvalidArgument, "recordsFrom %d or recordsTo %d is out of range", from, to)
		}
		if n := floorDiv(to, step) - floorDiv(from, step) + 2; n > maxBuckets {
			return q, status.Errorf(codes.InvalidArgument, "%d intervals asked for; at most %d", n, maxBuckets)
		}
	}
	// Unspecified and unknown values are no filter, as upstream has it.
	switch req.GetSecurityServerType() {
	case opmonrpc.SecurityServerType_CLIENT:
		q.Type = "Client"
	case opmonrpc.SecurityServerType_PRODUCER:
		q.Type = "Producer"
	}
	if m := req.GetMemberId(); m != nil {
		// A subsystem is told from a member by subsystem_code being present;
		// object_type is ignored, as upstream does.
		id := schema.ClientID{Instance: m.GetXroadInstance(), MemberClass: m.GetMemberClass(), MemberCode: m.GetMemberCode()}
		if m.SubsystemCode != nil {
			id.Subsystem, id.HasSubsystem = m.GetSubsystemCode(), true
		}
		q.Member = &id
	}
	if sv := req.GetServiceId(); sv != nil {
		id := schema.ServiceID{
			Provider: schema.ClientID{Instance: sv.GetXroadInstance(), MemberClass: sv.GetMemberClass(), MemberCode: sv.GetMemberCode()},
			Code:     sv.GetServiceCode(),
		}
		if sv.GetSubsystemCode() != "" {
			id.Provider.Subsystem, id.Provider.HasSubsystem = sv.GetSubsystemCode(), true
		}
		if sv.ServiceVersion != nil {
			id.Version, id.HasVersion = sv.GetServiceVersion(), true
		}
		q.Service = &id
	}
	return q, nil
}

func (s *service) dbError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, storage.ErrClosed):
		return status.Error(codes.Unavailable, "the daemon is shutting down")
	}
	s.log.Error().Err(err).Msg("gRPC intervals query failed")
	return status.Error(codes.Internal, "intervals query failed: "+oneLine(err.Error()))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
