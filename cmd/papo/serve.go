//go:build !papofront

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/serve"
)

// listenFlag collects repeated --listen values.
type listenFlag []serve.Address

func (l *listenFlag) String() string {
	s := make([]string, len(*l))
	for i, a := range *l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (l *listenFlag) Set(v string) error {
	a, err := serve.ParseAddress(v)
	if err != nil {
		return err
	}
	*l = append(*l, a)
	return nil
}

// runServe implements `papo serve`: package serve wired to listeners, signals and a log.
func runServe(env *environment, args []string) error {
	fs := flagSet("serve", "--listen ADDR [--listen ADDR ...] [--state-dir DIR] [flags]")
	var listens listenFlag
	fs.Var(&listens, "listen", "where to listen: unix:///path/papo.sock (mode 0600), tcp://127.0.0.1:PORT or stdio (repeatable)")
	device := fs.String("device", "auto", "engine: auto (CUDA when papo-cuda finds a device, else CPU), cpu or cuda")
	threads := fs.Int("threads", 0, "CPU engine worker threads (0: all cores)")
	stateDir := fs.String("state-dir", "", "directory of the run states, one <papo.run_id>.json per run (needed for reweight requests)")
	history := fs.Int("state-history", papo.DefaultHistory, "steps each run state remembers, so that a re-sent step can roll the run back")
	allowRemote := fs.Bool("allow-remote", false, "allow TCP addresses other than loopback (requires PAPO_TOKEN and --tls-cert/--tls-key)")
	insecureLoopback := fs.Bool("insecure-loopback", false, "serve loopback TCP (--listen tcp://, --flight) without PAPO_TOKEN: every local user can then use every run")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) for TLS on the TCP listeners and Flight")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	maxBatch := fs.Int64("max-batch-bytes", 1<<30, "largest record batch body a request may send")
	idleTimeout := fs.Duration("idle-timeout", 60*time.Second, "drop a client that sends less than 64 KiB in this much waiting (nothing, or a byte a second)")
	maxConns := fs.Int("max-conns", 256, "most socket connections open at once (one more is answered with kind busy); Flight: concurrent calls per connection")
	drainTimeout := fs.Duration("drain-timeout", 30*time.Second, "after SIGTERM, how long requests in progress may take to finish before they are stopped")
	flightAddr := fs.String("flight", "", "also serve Arrow Flight DoExchange on this address (host:port, loopback unless --allow-remote; Bearer token)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this address (host:port, loopback unless --allow-remote)")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	configPath := fs.String("config", "", "default reweighting parameters from a .toml or .json file (a request's papo.config wins)")
	cfg := papo.DefaultConfig()
	cfg.RegisterFlags(fs)
	positional, err := parseFlags(fs, args, env.stderr)
	if err != nil {
		return err
	}
	if len(positional) != 0 {
		return usagef("unexpected arguments %q", positional)
	}
	if len(listens) == 0 {
		return usagef("--listen is required (unix:///path/papo.sock, tcp://127.0.0.1:PORT or stdio)")
	}
	if *configPath != "" {
		if err := papo.LoadConfig(*configPath, &cfg); err != nil {
			return usagef("--config: %v", err)
		}
		if _, err := parseFlags(fs, args, env.stderr); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	token := os.Getenv("PAPO_TOKEN")
	if *allowRemote && token == "" {
		return usagef("--allow-remote requires a shared token in PAPO_TOKEN: clients send it as the papo.token schema metadata")
	}
	tcp := *flightAddr != ""
	for _, a := range listens {
		tcp = tcp || a.Network == "tcp"
	}
	switch {
	case tcp && token == "" && !*insecureLoopback:
		return usagef("TCP (--listen tcp://, --flight) requires a shared token in PAPO_TOKEN: any local user can connect to a " +
			"loopback port and reset or roll back any run (or give --insecure-loopback to go without)")
	case *insecureLoopback && *allowRemote:
		return usagef("--insecure-loopback and --allow-remote exclude each other: a remote client needs the token")
	case (*tlsCert == "") != (*tlsKey == ""):
		return usagef("--tls-cert and --tls-key go together")
	case *allowRemote && *tlsCert == "":
		return usagef("--allow-remote requires --tls-cert and --tls-key: a token sent in cleartext over a network is not a secret")
	case *idleTimeout <= 0 || *maxConns <= 0 || *drainTimeout <= 0:
		return usagef("--idle-timeout, --max-conns and --drain-timeout: want values > 0")
	}
	var tlsConfig *tls.Config
	if *tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return usagef("--tls-cert %s, --tls-key %s: %v", *tlsCert, *tlsKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	stdio := 0
	for _, a := range listens {
		if a.Network == "stdio" {
			stdio++
		}
	}
	if stdio > 1 {
		return usagef("--listen stdio may be given once")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(env.stderr, hopts)
	case "json":
		handler = slog.NewJSONHandler(env.stderr, hopts)
	default:
		return usagef("--log-format %q: want text or json", *logFormat)
	}
	log := slog.New(handler)

	// Signals are caught from here on: a SIGTERM that comes as soon as the start line is out
	// must drain, not kill.
	sigs := env.signals
	if sigs == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(ch)
		sigs = ch
	}
	engine, err := selectEngine(env, *device, *threads, append([]string{"serve"}, args...))
	if err != nil {
		return err
	}
	defer engine.Close()
	var metrics *serve.Metrics
	if *metricsAddr != "" {
		metrics = serve.NewMetrics(engine.Name())
	}
	srv, err := serve.New(serve.Config{Engine: engine, Reweight: cfg, StateDir: *stateDir, History: *history,
		Token: token, TLS: tlsConfig, MaxBatchBytes: *maxBatch, IdleTimeout: *idleTimeout, MaxConns: *maxConns,
		Logger: log, Metrics: metrics})
	if err != nil {
		return err
	}

	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	var where []string
	for _, a := range listens {
		if a.Network == "stdio" {
			where = append(where, "stdio")
			continue
		}
		l, err := serve.Listen(a, *allowRemote)
		if err != nil {
			closeAll()
			return err
		}
		if a.Network == "tcp" {
			a.Addr = l.Addr().String() // the port chosen for :0
			if tlsConfig != nil {
				l = tls.NewListener(l, tlsConfig)
				a.Network = "tls"
			}
		}
		listeners = append(listeners, l)
		where = append(where, a.String())
	}
	if *flightAddr != "" {
		l, err := serve.Listen(serve.Address{Network: "tcp", Addr: *flightAddr}, *allowRemote)
		if err != nil {
			closeAll()
			return fmt.Errorf("--flight: %w", err)
		}
		fsrv := srv.NewFlight(l)
		go fsrv.Serve()
		defer fsrv.Shutdown() // after srv.Shutdown: gRPC lets the calls in progress finish
		scheme := "grpc"
		if tlsConfig != nil {
			scheme = "grpcs" // TLS
		}
		where = append(where, "flight "+scheme+"://"+l.Addr().String())
	}
	var metricsServer *http.Server
	if *metricsAddr != "" {
		l, err := serve.Listen(serve.Address{Network: "tcp", Addr: *metricsAddr}, *allowRemote)
		if err != nil {
			closeAll()
			return fmt.Errorf("--metrics: %w", err)
		}
		metricsServer = metrics.HTTPServer(*idleTimeout)
		go metricsServer.Serve(l)
		defer metricsServer.Close()
		where = append(where, "metrics http://"+l.Addr().String()+"/metrics")
	}

	state := *stateDir
	if state == "" {
		state = "none (analyze requests only)"
	}
	fmt.Fprintf(env.stderr, "papo serve: listening on %s; engine %s; state dir %s; token %s\n",
		strings.Join(where, ", "), engine.Name(), state, map[bool]string{true: "required", false: "not required"}[token != ""])
	log.Info("listening", "addresses", where, "engine", engine.Name(), "state_dir", *stateDir, "token_required", token != "")
	if env.serveReady != nil {
		env.serveReady(where)
	}

	errs := make(chan error, len(listeners)+1)
	for _, l := range listeners {
		go func() { errs <- srv.Serve(l) }()
	}
	stdioDone := make(chan struct{})
	if stdio > 0 {
		go func() {
			srv.ServeStream(env.stdin, env.stdout, "stdio")
			close(stdioDone)
		}()
	}

	var serveErr error
	select {
	case sig := <-sigs:
		log.Info("draining: finishing the requests in progress (send the signal again to stop at once)", "signal", sig.String())
	case <-stdioDone:
		if len(listeners) > 0 {
			// stdio ended; the sockets go on until a signal.
			sig := <-sigs
			log.Info("draining", "signal", sig.String())
		}
	case serveErr = <-errs:
		log.Error("listener failed", "err", serveErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drainTimeout)
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("stopping at once: requests in progress fail and their run states stay unchanged", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	err = srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("the drain timed out: requests still in progress were stopped and their run states are unchanged",
			"drain_timeout", drainTimeout.String())
	}
	cancel()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, serve.ErrServerClosed) {
		return serveErr
	}
	return err
}
