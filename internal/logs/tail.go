package logs

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
)

// tailWindow bounds how much of a raw file TailFile reads, so a crash
// report stays small whatever the instance wrote last.
const tailWindow = 1 << 20

// TailFile returns the last n lines of a raw file (for crash reports),
// oldest first, without their newlines. An unterminated last line counts
// as a line. It reads at most the file's last MiB; a line that starts
// before that is left out unless it is the only one. A missing or
// unreadable file has no lines.
func TailFile(path string, n int) []string {
	if n <= 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size == 0 {
		return nil
	}
	// Read backwards in blocks until the window holds n+1 newlines (the
	// extra one marks where the first wanted line starts) or the start.
	const block = 16 << 10
	var chunks [][]byte // newest first
	start, newlines := size, 0
	for start > 0 && size-start < tailWindow && newlines <= n {
		step := min(block, start, tailWindow-(size-start))
		start -= step
		chunk := make([]byte, step)
		if _, err := f.ReadAt(chunk, start); err != nil && err != io.EOF {
			return nil
		}
		chunks = append(chunks, chunk)
		newlines += bytes.Count(chunk, []byte{'\n'})
	}
	slices.Reverse(chunks)
	buf := bytes.Join(chunks, nil)
	buf = bytes.TrimSuffix(buf, []byte{'\n'})
	lines := strings.Split(string(buf), "\n")
	if start > 0 && len(lines) > 1 {
		lines = lines[1:] // began before the window: only its end is here
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(strings.TrimLeft(l, "\x00"), "\r")
	}
	return lines
}
