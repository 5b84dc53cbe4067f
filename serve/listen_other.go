//go:build !unix

package serve

import "net"

func listenPrivateUnix(path string) (net.Listener, error) { return net.Listen("unix", path) }
