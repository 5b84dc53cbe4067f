package serve

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Address is a parsed --listen value.
type Address struct {
	Network string // "unix", "tcp" or "stdio"
	Addr    string // the socket path or host:port ("" for stdio)
}

func (a Address) String() string {
	switch a.Network {
	case "stdio":
		return "stdio"
	case "unix":
		return "unix://" + a.Addr
	case "tls":
		return "tls://" + a.Addr // TCP with TLS (papo serve --tls-cert)
	}
	return "tcp://" + a.Addr
}

// ParseAddress reads unix:///path/to.sock, tcp://host:port or stdio.
func ParseAddress(s string) (Address, error) {
	if s == "stdio" {
		return Address{Network: "stdio"}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Address{}, fmt.Errorf("--listen %q: %v", s, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if u.Host != "" { // unix://relative/path
			path = u.Host + u.Path
		}
		if path == "" {
			return Address{}, fmt.Errorf("--listen %q: no socket path (want unix:///path/to/papo.sock)", s)
		}
		return Address{Network: "unix", Addr: path}, nil
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Path != "" {
			return Address{}, fmt.Errorf("--listen %q: want tcp://host:port", s)
		}
		return Address{Network: "tcp", Addr: u.Host}, nil
	}
	return Address{}, fmt.Errorf("--listen %q: want unix:///path, tcp://host:port or stdio", s)
}

// loopback reports whether host names only loopback addresses.
func loopback(host string) (bool, error) {
	if host == "localhost" {
		return true, nil
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return ip.IsLoopback(), nil
	}
	if host == "" {
		return false, nil // every interface
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// Listen opens a unix or TCP listener. A unix socket is created with mode 0600 (a stale socket
// file that nobody listens on is replaced). A TCP address must be loopback unless
// allowRemote.
func Listen(a Address, allowRemote bool) (net.Listener, error) {
	switch a.Network {
	case "unix":
		if st, err := os.Lstat(a.Addr); err == nil {
			if st.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("%s: exists and is not a socket", a.Addr)
			}
			if c, err := net.DialTimeout("unix", a.Addr, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("%s: another server listens on it", a.Addr)
			}
			if err := os.Remove(a.Addr); err != nil {
				return nil, fmt.Errorf("%s: removing the stale socket: %w", a.Addr, err)
			}
		}
		l, err := listenPrivateUnix(a.Addr)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(a.Addr, 0o600); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	case "tcp":
		host, _, _ := net.SplitHostPort(a.Addr)
		lo, err := loopback(host)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		if !lo && !allowRemote {
			return nil, fmt.Errorf("%s is not a loopback address: papo serve listens on 127.0.0.1 or ::1 only, "+
				"unless --allow-remote is given (which requires PAPO_TOKEN)", a)
		}
		return net.Listen("tcp", a.Addr)
	}
	return nil, errors.New("serve: Listen takes unix and tcp addresses")
}
