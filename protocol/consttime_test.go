package protocol

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// secretName matches the names of values a peer must not learn about by
// timing: the nonce, the transcript hash, the tls-exporter binding, MACs.
var secretName = regexp.MustCompile(`(?i)^(nonce|cha|hash|exporter|cb|secret|mac|tag)$`)

// TestSecretComparisonsConstantTime reads this package's source and fails if a
// secret is compared with == or != (other than against nil or a constant) or
// with bytes.Equal, instead of crypto/subtle. Spec section "Timing".
func TestSecretComparisonsConstantTime(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	subtleCalls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && !public(n.X) && !public(n.Y) && (secret(n.X) || secret(n.Y)) {
					t.Errorf("%s: secret compared with %s; use crypto/subtle", fset.Position(n.Pos()), n.Op)
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					pkg, _ := sel.X.(*ast.Ident)
					switch {
					case pkg != nil && pkg.Name == "bytes" && sel.Sel.Name == "Equal" && (secret(n.Args[0]) || secret(n.Args[1])):
						t.Errorf("%s: secret compared with bytes.Equal; use crypto/subtle", fset.Position(n.Pos()))
					case pkg != nil && pkg.Name == "subtle" && sel.Sel.Name == "ConstantTimeCompare":
						subtleCalls++
					}
				}
			}
			return true
		})
	}
	// The transcript hash, the nonce and the channel binding.
	if subtleCalls < 3 {
		t.Fatalf("%d constant-time comparisons found, want at least 3", subtleCalls)
	}
}

// secret reports whether e names a secret value (an identifier or field).
func secret(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return secretName.MatchString(e.Name)
	case *ast.SelectorExpr:
		return secretName.MatchString(e.Sel.Name)
	}
	return false
}

// public reports whether e is nil, a literal, a constant (exported name), or
// a length: comparing a secret with those leaks nothing.
func public(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return e.Name == "nil" || ast.IsExported(e.Name)
	case *ast.CallExpr:
		id, ok := e.Fun.(*ast.Ident)
		return ok && id.Name == "len"
	}
	return false
}
