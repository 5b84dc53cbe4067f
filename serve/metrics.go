package serve

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are a server's Prometheus metrics, in a registry of their own (no global state).
// A nil *Metrics counts nothing.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	tokens      prometheus.Counter
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	latency     *prometheus.HistogramVec
	tokenRate   prometheus.Gauge
	connections prometheus.Gauge
}

// NewMetrics registers the server's metrics; engine labels papo_engine_info.
func NewMetrics(engine string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "papo_requests_total",
			Help: "Requests served, by kind (analyze, reweight, rollback, stats; invalid for any other papo.request) and status (ok, error)."}, []string{"kind", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "papo_request_errors_total",
			Help: "Failed requests by error kind (input, request, auth, too_large, state, busy, shutdown, internal, client_gone)."}, []string{"kind"}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "papo_tokens_total",
			Help: "Token rows read in requests."}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "papo_request_bytes_total",
			Help: "Bytes read from clients."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "papo_reply_bytes_total",
			Help: "Bytes written to clients."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "papo_request_duration_seconds",
			Help:    "Time from a request's first byte to the end of its reply.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}, []string{"kind"}),
		tokenRate: prometheus.NewGauge(prometheus.GaugeOpts{Name: "papo_last_request_tokens_per_second",
			Help: "Tokens per second of the last request with token rows (rate(papo_tokens_total) for the average)."}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "papo_connections",
			Help: "Open client connections."}),
	}
	engineInfo := prometheus.NewGauge(prometheus.GaugeOpts{Name: "papo_engine_info",
		Help: "The engine that computes requests (value 1).", ConstLabels: prometheus.Labels{"engine": engine}})
	engineInfo.Set(1)
	m.reg.MustRegister(m.requests, m.errors, m.tokens, m.bytesIn, m.bytesOut, m.latency, m.tokenRate, m.connections,
		engineInfo, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// HTTPServer is an HTTP server of the metrics at /metrics, with every client-controlled
// wait bounded by timeout (headers, the request, the reply, an idle keep-alive connection)
// and headers capped at 64 KiB.
func (m *Metrics) HTTPServer(timeout time.Duration) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	return &http.Server{Handler: mux, ReadHeaderTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		IdleTimeout: timeout, MaxHeaderBytes: 64 << 10}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *Metrics) request(kind, status string, errKind ErrorKind, failed bool, tokens, in, out int64, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(kind, status).Inc()
	if failed {
		m.errors.WithLabelValues(string(errKind)).Inc()
	}
	m.tokens.Add(float64(tokens))
	m.bytesIn.Add(float64(in))
	m.bytesOut.Add(float64(out))
	m.latency.WithLabelValues(kind).Observe(d.Seconds())
	if tokens > 0 && d > 0 {
		m.tokenRate.Set(float64(tokens) / d.Seconds())
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.connections.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.connections.Dec()
	}
}
