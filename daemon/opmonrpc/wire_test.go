package opmonrpc

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWireNames pins the names and field numbers a security server sends
// and expects (upstream X-Road 7.8's proto files), so that an edit of the
// .proto files cannot change the wire format unnoticed.
func TestWireNames(t *testing.T) {
	sd := File_opmonitor_service_proto.Services().Get(0)
	if sd.FullName() != "org.niis.xroad.opmonitor.api.OpMonitorService" {
		t.Errorf("service %s", sd.FullName())
	}
	m := sd.Methods().ByName("GetOperationalDataIntervals")
	if m == nil || m.Input().FullName() != "org.niis.xroad.opmonitor.api.GetOperationalDataIntervalsReq" ||
		m.Output().FullName() != "org.niis.xroad.opmonitor.api.GetOperationalDataIntervalsResp" {
		t.Fatalf("method %v", m)
	}
	type field struct {
		name     protoreflect.Name
		number   protoreflect.FieldNumber
		kind     protoreflect.Kind
		presence bool // proto3 optional or a message
	}
	for msg, want := range map[protoreflect.ProtoMessage][]field{
		&GetOperationalDataIntervalsReq{}: {
			{"recordsFrom", 1, protoreflect.Int64Kind, false},
			{"recordsTo", 2, protoreflect.Int64Kind, false},
			{"intervalInMinutes", 3, protoreflect.Int32Kind, false},
			{"securityServerType", 4, protoreflect.EnumKind, true},
			{"member_id", 5, protoreflect.MessageKind, true},
			{"service_id", 6, protoreflect.MessageKind, true},
		},
		&GetOperationalDataIntervalsResp{}: {
			{"operationalDataInterval", 1, protoreflect.MessageKind, false},
		},
		&OperationalDataIntervalProto{}: {
			{"timeIntervalStart", 1, protoreflect.MessageKind, true},
			{"successCount", 2, protoreflect.Int64Kind, false},
			{"failureCount", 3, protoreflect.Int64Kind, false},
		},
		&ClientIdProto{}: {
			{"member_class", 1, protoreflect.StringKind, false},
			{"member_code", 2, protoreflect.StringKind, false},
			{"subsystem_code", 3, protoreflect.StringKind, true},
			{"xroad_instance", 4, protoreflect.StringKind, false},
			{"object_type", 5, protoreflect.EnumKind, false},
		},
		&ServiceIdProto{}: {
			{"xroad_instance", 1, protoreflect.StringKind, false},
			{"service_code", 2, protoreflect.StringKind, false},
			{"member_class", 3, protoreflect.StringKind, false},
			{"member_code", 4, protoreflect.StringKind, false},
			{"subsystem_code", 5, protoreflect.StringKind, false},
			{"service_version", 6, protoreflect.StringKind, true},
		},
	} {
		d := msg.ProtoReflect().Descriptor()
		if d.Fields().Len() != len(want) {
			t.Errorf("%s has %d fields, want %d", d.FullName(), d.Fields().Len(), len(want))
		}
		for _, w := range want {
			f := d.Fields().ByName(w.name)
			if f == nil || f.Number() != w.number || f.Kind() != w.kind || f.HasPresence() != w.presence {
				t.Errorf("%s.%s: %v, want number %d kind %v presence %v", d.FullName(), w.name, f, w.number, w.kind, w.presence)
			}
		}
	}
	// Top-level names: upstream's common_messages.proto has no package.
	if n := (&ClientIdProto{}).ProtoReflect().Descriptor().FullName(); n != "ClientIdProto" {
		t.Errorf("ClientIdProto is %s", n)
	}
	for name, num := range map[protoreflect.Name]protoreflect.EnumNumber{"SECURITY_SERVER_TYPE_UNSPECIFIED": 0, "CLIENT": 1, "PRODUCER": 2} {
		if v := SecurityServerType(0).Descriptor().Values().ByName(name); v == nil || v.Number() != num {
			t.Errorf("SecurityServerType %s: %v", name, v)
		}
	}
}
