module github.com/wsproof/wsproof

go 1.26.0

require (
	github.com/go-jose/go-jose/v4 v4.1.9
	golang.org/x/crypto v0.59.0
)

require golang.org/x/sys v0.50.0 // indirect
