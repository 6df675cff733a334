package daemon

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestMultiListener(t *testing.T) {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("no second loopback address:", err)
	}
	m := newMultiListener([]net.Listener{a, b})
	for _, ln := range []net.Listener{a, b} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := m.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got.LocalAddr().String() != ln.Addr().String() {
			t.Errorf("accepted on %s, dialled %s", got.LocalAddr(), ln.Addr())
		}
		got.Close()
	}
	done := make(chan error, 1)
	go func() { _, err := m.Accept(); done <- err }()
	m.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if _, err := net.DialTimeout("tcp", b.Addr().String(), time.Second); err == nil {
		t.Error("second listener still open")
	}
}

func TestListenAllLocalhost(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	ln, err := listenAll(context.Background(), "localhost", port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ips, _ := net.LookupIP("localhost")
	for _, ip := range ips {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)), time.Second)
		if err != nil {
			// ::1 may be listed without IPv6 being usable; 127.0.0.1 must work.
			if ip.To4() != nil {
				t.Errorf("dial %s: %v", ip, err)
			}
			continue
		}
		c.Close()
	}
	if _, err := listenAll(context.Background(), "no-such-host.invalid", port); err == nil {
		t.Error("unresolvable host accepted")
	}
}
