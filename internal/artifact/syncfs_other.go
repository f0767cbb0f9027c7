//go:build !unix

package artifact

// syncFS is a no-op where there is no sync(2); skiff servers run on Linux,
// and other systems only need Pack.
func syncFS(dir string) error { return nil }
