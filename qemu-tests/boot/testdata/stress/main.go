// Command stress exercises the runtime the way real services do: many
// goroutines, channels, select with timeouts, sleeps that must not return
// early, heavy allocation with the GC keeping up, contended locks, maps,
// sort, crypto and JSON. It prints one line per part and "stress: ok" at
// the end, or the first failure and exit status 1.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"
)

func fail(format string, args ...any) {
	fmt.Printf("stress: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func goroutines() {
	const n = 10000
	var wg sync.WaitGroup
	results := make(chan int, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			results <- i * 2
		}(i)
	}
	close(start)
	wg.Wait()
	close(results)
	sum := 0
	for v := range results {
		sum += v
	}
	if want := n * (n - 1); sum != want {
		fail("goroutines: sum %d, want %d", sum, want)
	}
	fmt.Println("stress: 10000 goroutines ok")
}

func selects() {
	c := make(chan int)
	timeouts, received := 0, 0
	go func() {
		for i := 0; i < 50; i++ {
			if i%2 == 0 {
				c <- i
			} else {
				time.Sleep(3 * time.Millisecond)
			}
		}
		close(c)
	}()
	for done := false; !done; {
		select {
		case _, ok := <-c:
			if !ok {
				done = true
				break
			}
			received++
		case <-time.After(time.Millisecond):
			timeouts++
		}
	}
	if received != 25 || timeouts == 0 {
		fail("select: received %d (want 25), timeouts %d (want > 0)", received, timeouts)
	}
	fmt.Printf("stress: select with timeouts ok (%d timeouts)\n", timeouts)
}

func sleeps() {
	durations := []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond,
		100 * time.Millisecond, 300 * time.Millisecond, time.Second}
	var wg sync.WaitGroup
	errs := make(chan string, len(durations))
	for _, d := range durations {
		wg.Add(1)
		go func(d time.Duration) {
			defer wg.Done()
			t0 := time.Now()
			time.Sleep(d)
			if got := time.Since(t0); got < d {
				errs <- fmt.Sprintf("sleep %v returned after %v", d, got)
			}
		}(d)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		fail("%s", e)
	}
	fmt.Println("stress: sleeps 1ms..1s never early ok")
}

func allocation() {
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var keep [][]byte
	total := 0
	for total < 1<<30 {
		b := make([]byte, 64<<10)
		b[0], b[len(b)-1] = 1, 2
		total += len(b)
		if len(keep) < 64 {
			keep = append(keep, b)
		} else {
			keep[total/len(b)%64] = b
		}
	}
	runtime.ReadMemStats(&ms1)
	if ms1.NumGC == ms0.NumGC {
		fail("allocation: 1 GiB allocated without a GC cycle")
	}
	if ms1.HeapSys > 96<<20 {
		fail("allocation: heap grew to %d MiB", ms1.HeapSys>>20)
	}
	fmt.Printf("stress: 1 GiB allocated, %d GC cycles, heap %d MiB ok\n", ms1.NumGC-ms0.NumGC, ms1.HeapSys>>20)
}

func locks() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	counter := 0
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				mu.Lock()
				counter++
				if j%100 == 0 {
					runtime.Gosched()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if counter != 64000 {
		fail("mutex: counter %d, want 64000", counter)
	}
	fmt.Println("stress: contended mutex ok")
}

func mapsSortCrypto() {
	m := make(map[string]int)
	for i := 0; i < 100000; i++ {
		m[fmt.Sprint("k", i)] = i
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) != 100000 || keys[0] != "k0" || m[keys[len(keys)-1]] != 99999 {
		fail("map/sort: %d keys, first %q", len(keys), keys[0])
	}
	sum := sha256.Sum256([]byte("abc"))
	if got := hex.EncodeToString(sum[:]); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		fail("sha256(abc) = %s", got)
	}
	type rec struct {
		Name string
		N    []int
	}
	in := rec{"unikgo", []int{1, 2, 3}}
	b, err := json.Marshal(in)
	if err != nil {
		fail("json: %v", err)
	}
	var out rec
	if err := json.Unmarshal(b, &out); err != nil || out.Name != in.Name || len(out.N) != 3 {
		fail("json round trip: %s -> %+v, %v", b, out, err)
	}
	runtime.GC()
	fmt.Println("stress: maps, sort, sha256, json, runtime.GC ok")
}

func spin() {
	// A goroutine in a tight loop must not stall the others or the GC
	// (asynchronous preemption).
	stop := make(chan struct{})
	go func() {
		x := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := 0; i < 1e7; i++ {
				x += i
			}
		}
	}()
	t0 := time.Now()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	close(stop)
	fmt.Printf("stress: GC beside a busy goroutine ok (%v)\n", time.Since(t0).Round(time.Millisecond))
}

func main() {
	t0 := time.Now()
	goroutines()
	selects()
	sleeps()
	locks()
	mapsSortCrypto()
	spin()
	allocation()
	fmt.Printf("stress: ok in %v\n", time.Since(t0).Round(time.Millisecond))
}
