// Command tinyplain is tinyclient's baseline for wsproof-bench's footprint
// figures: the same program on a plain gorilla/websocket socket, without
// authentication. It dials, sends one message, reads the echo, says
// "connected" and holds the socket open until its standard input closes.
//
//	tinyplain URL
package main

import (
	"io"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	if len(os.Args) != 2 {
		os.Stderr.WriteString("usage: tinyplain URL\n")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		os.Stderr.WriteString("tinyplain: " + err.Error() + "\n")
		os.Exit(1)
	}
}

func run(url string) error {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte("reading 21.5")); err != nil {
		return err
	}
	if _, _, err := ws.ReadMessage(); err != nil {
		return err
	}
	os.Stdout.WriteString("connected\n")
	go func() { // answer pings, notice the close
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	return ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}
