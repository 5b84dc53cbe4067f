package serve

import (
	"bufio"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIdleClients: a client that connects and sends nothing, and one that sends a request a
// byte every 20 ms, are dropped once their idle budget (300 ms here) is spent, the slow one with
// an error reply naming --idle-timeout; a client that pauses between requests for less than the
// budget, and a well-behaved client meanwhile, are served.
func TestIdleClients(t *testing.T) {
	_, sock := startServer(t, Config{IdleTimeout: 300 * time.Millisecond})
	req := input(t, 1, nil)

	silent, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	slow, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	sent := make(chan int, 1)
	go func() {
		n := 0
		for ; n < len(req); n++ {
			if _, err := slow.Write(req[n : n+1]); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		sent <- n
	}()

	good := dial(t, sock)
	for range 3 {
		rep, err := good.do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, rep, "ok", "")
		time.Sleep(100 * time.Millisecond) // under the budget between requests
	}

	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the silent client: read %d bytes, %v; want the server to close it", n, err)
	}
	slowC := &client{c: slow, br: bufio.NewReader(slow)}
	slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	rep, err := slowC.readReply()
	if err != nil {
		t.Fatalf("the slow client: %v", err)
	}
	wantStatus(t, rep, "error", string(KindInput))
	if !strings.Contains(rep.status[KeyError], "--idle-timeout") {
		t.Fatalf("the slow client's error %q does not name --idle-timeout", rep.status[KeyError])
	}
	if n := <-sent; n >= len(req) {
		t.Fatalf("the slow client sent its whole request (%d bytes) before being dropped", n)
	}
}

// TestMaxConns: over MaxConns open connections, one more is answered with kind busy and
// closed; when one closes, a new client is served.
func TestMaxConns(t *testing.T) {
	_, sock := startServer(t, Config{MaxConns: 2})
	a, b := dial(t, sock), dial(t, sock)
	req := input(t, 1, nil)
	for _, c := range []*client{a, b} {
		if rep, err := c.do(req); err != nil || rep.status[KeyStatus] != "ok" {
			t.Fatalf("within MaxConns: %v %v", err, rep)
		}
	}
	third := dial(t, sock)
	third.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	rep, err := third.readReply()
	if err != nil {
		t.Fatalf("over MaxConns: %v", err)
	}
	wantStatus(t, rep, "error", string(KindBusy))
	if !strings.Contains(rep.status[KeyError], "--max-conns 2") {
		t.Fatalf("busy error %q", rep.status[KeyError])
	}
	if _, err := third.br.ReadByte(); err != io.EOF {
		t.Fatalf("over MaxConns: the connection stays open (%v)", err)
	}
	a.c.Close()
	for try := 0; ; try++ { // the server notices the close when its read returns
		c := dial(t, sock)
		rep, err := c.do(req)
		if err == nil && rep.status[KeyStatus] == "ok" {
			break
		}
		if try == 100 {
			t.Fatalf("after a connection closed, a new one is still refused: %v %v", err, rep)
		}
		c.c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsBounds: invented papo.request values count under kind "invalid" (no new series per
// value), and the metrics HTTP server drops a client that sends half a header.
func TestMetricsBounds(t *testing.T) {
	m := NewMetrics("cpu")
	_, sock := startServer(t, Config{Metrics: m})
	c := dial(t, sock)
	for _, kind := range []string{"x1", "x2", "x3", Analyze} {
		if _, err := c.do(input(t, 1, withMeta(KeyRequest, kind))); err != nil {
			t.Fatal(err)
		}
	}
	// The server counts a request after its reply has reached the connection, so the client
	// may read the last reply first: wait for the count.
	want := map[string]float64{"kind=invalid,status=error": 3, "kind=analyze,status=ok": 1}
	var series map[string]float64
	for try := 0; try < 200; try++ {
		families, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		series = map[string]float64{}
		for _, f := range families {
			if f.GetName() != "papo_requests_total" {
				continue
			}
			for _, s := range f.GetMetric() {
				var labels []string
				for _, l := range s.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				series[strings.Join(labels, ",")] = s.GetCounter().GetValue()
			}
		}
		if maps.Equal(series, want) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !maps.Equal(series, want) {
		t.Fatalf("request series %v after 3 invented kinds and an analyze; want %v", series, want)
	}

	hs := m.HTTPServer(200 * time.Millisecond)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(l)
	defer hs.Close()
	hc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hc.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")) // the header never ends
	hc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(hc); err != nil {
		t.Fatalf("the metrics server kept a client with half a header: %v", err)
	}
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %s", resp.Status)
	}
}
