package serve

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/entropy-polarity/papo/internal/testinput"
	"github.com/entropy-polarity/papo/polarity"
)

// FuzzRequestMetadata sends one request per input through a server's byte stream (the path of
// every transport), with fuzzed request metadata: the kind, run id, papo.config, method,
// papo.global_stats, rollback_to, the token, and the contract's τ, η and ε keys. The server
// must never panic, must answer every request with a well-formed reply (a data stream, then a
// status stream whose papo.status is ok or error with a known kind other than internal and a
// message), and must refuse a wrong token as auth.
func FuzzRequestMetadata(f *testing.F) {
	f.Add("analyze", "", "", "", "", "", testToken, "1", "1", "none", "none")
	f.Add("reweight", "run-1", `{"lambda":0.3,"phase":{"mode":"target","target_entropy":1}}`, "", "", "", testToken, "0.7", "1e-3", "0.2", "0.28")
	f.Add("reweight", "run-2", "", "steer", `[{"step":0,"entropy_tokens":20,"entropy_sum":41.5,"weighted_tokens":20.0,"polarity_sum":0.25,"polarity_sum2":1.5,"abs_advantage_sum":12,"abs_advantage_sign_sum":-2}]`, "", testToken, "1", "1", "", "")
	f.Add("rollback", "run-1", "", "", "", "1", testToken, "", "", "", "")
	f.Add("stats", "", "", "", "", "", testToken, "2e-39", "1e300", "-1", "nan")
	f.Add("compute", "../x", `{"g":"sign"}`, "papo", "[]", "x", "guess", "-1", "inf", "1e309", "0")
	srv, err := New(Config{Engine: polarity.NewCPU(1), StateDir: f.TempDir(), Token: testToken, MaxBatchBytes: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind, runID, config, method, global, rollbackTo, token, tau, lr, clipLow, clipHigh string) {
		md := map[string]string{KeyRequest: kind, KeyRunID: runID, KeyConfig: config, KeyMethod: method,
			KeyGlobalStats: global, KeyRollbackTo: rollbackTo, KeyToken: token,
			"papo.temperature": tau, "papo.lr": lr, "papo.clip_low": clipLow, "papo.clip_high": clipHigh}
		for k, v := range md {
			if v == "" {
				delete(md, k) // an absent key, as a client that does not set it
			}
		}
		req, err := testinput.Stream(testinput.Spec{V: 8, Steps: testinput.StepRows(3, 0, 1), Batches: []int{4, 2}, Seed: 1, Meta: md})
		if err != nil {
			t.Skip() // metadata the Arrow writer itself cannot write
		}
		var out bytes.Buffer
		if err := srv.ServeStream(bytes.NewReader(req), &out, "fuzz"); err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(out.Bytes())
		data, err := ipc.NewReader(r)
		if err != nil {
			t.Fatalf("the reply's data stream: %v", err)
		}
		for data.Next() {
		}
		if err := data.Err(); err != nil {
			t.Fatalf("the reply's data stream: %v", err)
		}
		data.Release()
		st, err := ipc.NewReader(r)
		if err != nil {
			t.Fatalf("the reply's status stream: %v", err)
		}
		for st.Next() {
		}
		get := func(k string) string { v, _ := st.Schema().Metadata().GetValue(k); return v }
		status, errKind, msg := get(KeyStatus), ErrorKind(get(KeyErrorKind)), get(KeyError)
		st.Release()
		switch {
		case status == "ok" && errKind == "":
		case status == "error" && msg != "" && knownKind(errKind):
		default:
			t.Fatalf("status %q, kind %q, error %q", status, errKind, msg)
		}
		// A wrong token is refused before anything else is looked at (but the schema's length).
		if token != testToken && (status == "ok" || errKind != KindAuth && errKind != KindTooLarge) {
			t.Fatalf("token %q: status %q kind %q (%s)", token, status, errKind, msg)
		}
	})
}

func knownKind(k ErrorKind) bool {
	switch k {
	case KindInput, KindRequest, KindAuth, KindTooLarge, KindState, KindBusy, KindShutdown, KindInternal, KindClientGone:
		return k != KindInternal // an internal error is a bug
	}
	return false
}
