package kernel

import (
	"unsafe"

	"github.com/unikgo/unikgo/x86"
)

// Console output: the 16550 UART at COM1 under QEMU (polled: the kernel
// never waits on a serial interrupt), and Xen's debug port 0xE9 when running
// on Xen before its PV console is up. kprint* allocate nothing and may be
// called from trap context.

const (
	com1       = 0x3f8
	uartTHR    = 0 // transmit holding register
	uartIER    = 1
	uartFCR    = 2
	uartLCR    = 3
	uartMCR    = 4
	uartLSR    = 5
	lsrTHRE    = 1 << 5
	xenDebugIO = 0xe9
)

var (
	useCOM1 bool
	useE9   bool
)

func consoleInit(onXen bool) {
	useE9 = onXen
	// 115200 8N1, FIFO on, no interrupts. A missing UART reads 0xff.
	if x86.InB(com1+uartLSR) != 0xff {
		useCOM1 = true
		x86.OutB(com1+uartIER, 0)
		x86.OutB(com1+uartLCR, 0x80)
		x86.OutB(com1+0, 1)
		x86.OutB(com1+1, 0)
		x86.OutB(com1+uartLCR, 0x03)
		x86.OutB(com1+uartFCR, 0xc7)
		x86.OutB(com1+uartMCR, 0x03)
	}
}

func putc(c byte) {
	if useCOM1 {
		for i := 0; i < 100000 && x86.InB(com1+uartLSR)&lsrTHRE == 0; i++ {
			x86.Pause()
		}
		x86.OutB(com1+uartTHR, c)
	}
	if useE9 {
		x86.OutB(xenDebugIO, c)
	}
}

func consoleWrite(b []byte) {
	if xenCons.Ready() {
		xenCons.Write(b)
		return
	}
	for _, c := range b {
		if c == '\n' && useCOM1 {
			putc('\r')
		}
		putc(c)
	}
}

func kprint(s string) {
	if xenCons.Ready() {
		xenCons.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
		return
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && useCOM1 {
			putc('\r')
		}
		putc(s[i])
	}
}

func kprintHex(v uint64) {
	const digits = "0123456789abcdef"
	var b [18]byte
	b[0], b[1] = '0', 'x'
	for i := 0; i < 16; i++ {
		b[17-i] = digits[v>>(4*i)&0xf]
	}
	consoleWrite(b[:])
}

func kprintDec(v uint64) {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	consoleWrite(b[i:])
}

// kprintMilli prints v/1000 with three decimals (v in thousandths). The
// fraction goes through consoleWrite like the rest: written with putc it
// reached only the serial port and port 0xe9, never Xen's PV console, where
// "kernel ready in 25.955 ms" read "25 ms".
func kprintMilli(v uint64) {
	kprintDec(v / 1000)
	f := v % 1000
	b := [4]byte{'.', byte('0' + f/100), byte('0' + f/10%10), byte('0' + f%10)}
	consoleWrite(b[:])
}
