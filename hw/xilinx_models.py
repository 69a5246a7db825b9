"""Behavioural Verilog models of the Xilinx primitives the netlist trees instantiate, for simulation only.

Synthesis must not read these (yosys would take them for user modules instead of the primitives): ``gen`` writes
them to their own file, named in ``top.json`` under ``simulation_models``.
"""

__all__ = ["MODELS", "simulation_models"]

MODELS = {
    "LUT6_2": """\
module LUT6_2 #(parameter [63:0] INIT = 64'h0) (
  output O6, output O5, input I0, input I1, input I2, input I3, input I4, input I5);
  wire [5:0] idx = {I5, I4, I3, I2, I1, I0};
  assign O6 = INIT[idx];
  assign O5 = INIT[{1'b0, idx[4:0]}];
endmodule
""",
    "CARRY4": """\
module CARRY4 (output [3:0] CO, output [3:0] O, input CI, input CYINIT, input [3:0] DI, input [3:0] S);
  wire c0 = CI | CYINIT;
  assign CO[0] = S[0] ? c0 : DI[0];
  assign CO[1] = S[1] ? CO[0] : DI[1];
  assign CO[2] = S[2] ? CO[1] : DI[2];
  assign CO[3] = S[3] ? CO[2] : DI[3];
  assign O = S ^ {CO[2:0], c0};
endmodule
""",
    "CARRY8": """\
module CARRY8 #(parameter CARRY_TYPE = "SINGLE_CY8") (
  output [7:0] CO, output [7:0] O, input CI, input CI_TOP, input [7:0] DI, input [7:0] S);
  wire [8:0] c;
  assign c[0] = CI;
  genvar i;
  generate for (i = 0; i < 8; i = i + 1) begin : chain
    assign c[i + 1] = S[i] ? c[i] : DI[i];
  end endgenerate
  assign CO = c[8:1];
  assign O = S ^ c[7:0];
endmodule
""",
}


def simulation_models(primitives):
    """Verilog text modelling each of ``primitives`` (names as instantiated)."""
    unknown = sorted(set(primitives) - set(MODELS))
    if unknown:
        raise ValueError(f"no simulation model for {unknown!r}")
    return "".join(MODELS[p] for p in sorted(primitives))
