// Simulation model of the ECP5 MULT18X18D for gate-level simulation (sim_netlist/).
//
// yosys ships MULT18X18D as a blackbox only (share/lattice/cells_bb_ecp5.v).  This model covers
// the configurations the netlists use: yosys' ECP5 mapping (share/lattice/dsp_map_18x18.v, every
// register bypassed: REG_*_CLK = "NONE") and hw.multiplier.RegisteredMultiplier (the A and B input
// registers and the output register on CLK0, enabled by CE0, reset synchronously by RST0).  P is
// the 36-bit product, each operand signed when its SIGNEDA/SIGNEDB input is 1.  Any other
// configuration (the pipeline or C registers, another clock, enable or reset) stops the simulation.
module MULT18X18D(
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35,
    output SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg [35:0] p_reg = 36'd0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_reg <= 18'd0;
            b_reg <= 18'd0;
        end else if (CE0) begin
            a_reg <= a_in;
            b_reg <= b_in;
        end
    end
    wire [17:0] a = (REG_INPUTA_CLK == "CLK0") ? a_reg : a_in;
    wire [17:0] b = (REG_INPUTB_CLK == "CLK0") ? b_reg : b_in;
    wire signed [36:0] sa = {{19{SIGNEDA & a[17]}}, a};
    wire signed [36:0] sb = {{19{SIGNEDB & b[17]}}, b};
    wire signed [73:0] product = sa * sb;
    always @(posedge CLK0) begin
        if (RST0) p_reg <= 36'd0;
        else if (CE0) p_reg <= product[35:0];
    end
    wire [35:0] p = (REG_OUTPUT_CLK == "CLK0") ? p_reg : product[35:0];
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
    assign SIGNEDP = SIGNEDA | SIGNEDB;

    initial begin
        if (REG_INPUTC_CLK != "NONE" || REG_PIPELINE_CLK != "NONE"
            || (REG_INPUTA_CLK != "NONE" && (REG_INPUTA_CLK != "CLK0" || REG_INPUTA_CE != "CE0" || REG_INPUTA_RST != "RST0"))
            || (REG_INPUTB_CLK != "NONE" && (REG_INPUTB_CLK != "CLK0" || REG_INPUTB_CE != "CE0" || REG_INPUTB_RST != "RST0"))
            || (REG_OUTPUT_CLK != "NONE" && (REG_OUTPUT_CLK != "CLK0" || REG_OUTPUT_CE != "CE0" || REG_OUTPUT_RST != "RST0"))
            || RESETMODE != "SYNC") begin
            $display("MULT18X18D model: only the unregistered configuration and the A, B and output registers on CLK0/CE0/RST0 are modelled");
            $fatal;
        end
    end
endmodule
