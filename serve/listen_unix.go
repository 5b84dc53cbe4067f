//go:build unix

package serve

import (
	"net"
	"syscall"
)

// listenPrivateUnix binds the socket with umask 077, so that it is never reachable by other
// users, not even between bind and chmod. (umask is per process: Listen is called at start-up.)
func listenPrivateUnix(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
