/// A bench that cannot go on (a worker that gave no answer, a report that cannot be written):
/// the command says its message in one line and exits 1.
package struct BenchFailure: Error, CustomStringConvertible {
  package var message: String

  package init(message: String) {
    self.message = message
  }

  package var description: String { self.message }
}
