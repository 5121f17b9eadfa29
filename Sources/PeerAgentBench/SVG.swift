private import Foundation

/// Just enough SVG for two charts.
struct SVG {
  let width: Double
  let height: Double
  private var body: [String] = []
  private let left = 70.0, right = 20.0, top = 40.0, bottom = 60.0

  init(width: Double, height: Double, title: String) {
    self.width = width
    self.height = height
    self.body.append(#"<text x="\#(width / 2)" y="22" text-anchor="middle" font-size="14">\#(Self.escape(title))</text>"#)
  }

  private var plotWidth: Double { self.width - self.left - self.right }
  private var plotHeight: Double { self.height - self.top - self.bottom }
  private func x(_ fraction: Double) -> Double { self.left + fraction * self.plotWidth }
  private func y(_ fraction: Double) -> Double { self.top + (1 - fraction) * self.plotHeight }

  mutating func axes(xLabel: String, yLabel: String, xMax: Double, yMax: Double, xTicks: Bool = true) {
    self.body.append(#"<rect x="\#(self.left)" y="\#(self.top)" width="\#(self.plotWidth)" height="\#(self.plotHeight)" fill="none" stroke="rgb(51,51,51)"/>"#)
    for i in 0 ... 4 {
      let f = Double(i) / 4
      self.body.append(#"<text x="\#(self.left - 6)" y="\#(self.y(f) + 4)" text-anchor="end" font-size="11">\#(Self.number(f * yMax))</text>"#)
      self.body.append(#"<line x1="\#(self.left)" y1="\#(self.y(f))" x2="\#(self.left + self.plotWidth)" y2="\#(self.y(f))" stroke="rgb(221,221,221)"/>"#)
      if xTicks {
        self.body.append(#"<text x="\#(self.x(f))" y="\#(self.top + self.plotHeight + 16)" text-anchor="middle" font-size="11">\#(Self.number(f * xMax))</text>"#)
      }
    }
    self.body.append(#"<text x="\#(self.left + self.plotWidth / 2)" y="\#(self.height - 8)" text-anchor="middle" font-size="12">\#(Self.escape(xLabel))</text>"#)
    self.body.append(#"<text x="14" y="\#(self.top + self.plotHeight / 2)" text-anchor="middle" font-size="12" transform="rotate(-90 14 \#(self.top + self.plotHeight / 2))">\#(Self.escape(yLabel))</text>"#)
  }

  mutating func line(_ points: [(x: Double, y: Double)], color: String, dashed: Bool) {
    let path = points.map { "\(self.x($0.x)),\(self.y($0.y))" }.joined(separator: " ")
    self.body.append(#"<polyline points="\#(path)" fill="none" stroke="\#(color)" stroke-width="2"\#(dashed ? #" stroke-dasharray="6 4""# : "")/>"#)
  }

  mutating func bar(x: Double, width: Double, height: Double, color: String) {
    self.body.append(#"<rect x="\#(self.x(x))" y="\#(self.y(height))" width="\#(width * self.plotWidth)" height="\#(height * self.plotHeight)" fill="\#(color)"/>"#)
  }

  mutating func label(x: Double, text: String) {
    self.body.append(#"<text x="\#(self.x(x))" y="\#(self.top + self.plotHeight + 16)" text-anchor="middle" font-size="10">\#(Self.escape(text))</text>"#)
  }

  mutating func legend(index: Int, text: String, color: String, dashed: Bool) {
    let y = self.top + 14 + Double(index) * 16
    let x = self.left + self.plotWidth - 290
    self.body.append(#"<line x1="\#(x)" y1="\#(y - 4)" x2="\#(x + 24)" y2="\#(y - 4)" stroke="\#(color)" stroke-width="3"\#(dashed ? #" stroke-dasharray="6 4""# : "")/>"#)
    self.body.append(#"<text x="\#(x + 30)" y="\#(y)" font-size="11">\#(Self.escape(text))</text>"#)
  }

  func render() -> String {
    """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(self.width)" height="\(self.height)" font-family="sans-serif">
    <rect width="100%" height="100%" fill="white"/>
    \(self.body.joined(separator: "\n"))
    </svg>

    """
  }

  static func number(_ value: Double) -> String {
    if value >= 10000 { return "\(Int((value / 1000).rounded()))k" }
    if value >= 10 { return "\(Int(value.rounded()))" }
    return String(format: "%.2f", value)
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
  }
}
