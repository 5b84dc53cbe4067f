//go:build !linux

package grow

// adviseHuge does nothing where transparent huge pages are not a thing to ask for.
func adviseHuge[T any](s []T) {}
