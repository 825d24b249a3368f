package vchan_test

import (
	"io"
	"testing"
)

// BenchmarkThroughput streams data from server to client over the host
// platform in 64 KiB writes; MB/s is the ring protocol's throughput with
// Go channels standing in for event channels.
func BenchmarkThroughput(b *testing.B) {
	const chunk = 64 << 10
	cases := []struct {
		name            string
		readMin, writeM int // server's; the server writes on the right ring
	}{
		{"order10", 2048, 1024},
		{"order11", 1024, 2048},
		{"order16", 1024, 1 << 16},
		{"order20", 1024, 1 << 20},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			_, srv, cli := pair(b, bc.readMin, bc.writeM)
			msg := make([]byte, chunk)
			done := make(chan error, 1)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				_, err := io.CopyBuffer(io.Discard, io.LimitReader(cli, int64(b.N)*chunk), make([]byte, chunk))
				done <- err
			}()
			for range b.N {
				if _, err := srv.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
