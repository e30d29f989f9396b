// Package js embeds the wsproof JavaScript client and its demo page, so that
// "wsproof serve" can serve them.
package js

import "embed"

// Files holds wsproof.js, the browser and Node.js client, and demo/, the demo
// page that "wsproof serve" serves at / (index.html, demo.js, demo.css).
//
//go:embed wsproof.js demo
var Files embed.FS
