// Command http is an ordinary net/http server: nothing in it knows it runs
// as a unikernel. unikbuild links the network in because it uses package
// net. Under QEMU, with user networking forwarding host port 8080:
//
//	unikbuild run --net user,hostfwd=tcp::8080-:80 ./examples/http
//	curl http://localhost:8080/

// (The address comes from QEMU's DHCP server; --env ip=10.0.2.15/24:10.0.2.2
// would set it statically, as Linux's ip= parameter.)
//
// It answers / with a greeting and its addresses, /echo with the request
// body, and /get?url=... by fetching url itself (an HTTP client inside).
// -addr sets the listening address (default :80).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", ":80", "listen address")
	flag.Parse()

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		fmt.Fprintf(w, "Hello from unikgo %s! You are %s.\n", host, r.RemoteAddr)
		ifs, _ := net.Interfaces()
		for _, ifc := range ifs {
			addrs, _ := ifc.Addrs()
			fmt.Fprintf(w, "%s %v %v\n", ifc.Name, ifc.HardwareAddr, addrs)
		}
	})
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read it all first: net/http stops reading a request body once
		// the response has started.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(b)
	})
	http.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http: serving on %v\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
