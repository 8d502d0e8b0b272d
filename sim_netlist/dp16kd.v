// Simulation model of the ECP5 DP16KD block RAM for gate-level simulation (sim_netlist/).
//
// yosys ships DP16KD as a blackbox only (share/lattice/cells_sim_ecp5.v).  This model covers what
// yosys' block-RAM mapping (share/lattice/brams_map_16kd.v) emits, which sim_netlist/cells.py checks
// on every instance before a build:
//   * true dual port, both ports of one width w in 1, 2, 4, 9, 18: word address AD[13:log2 w]
//     (AD[13:3] for 9, AD[13:4] for 18 with AD[1:0] the two 9-bit byte enables), CE, WE, a
//     synchronous read whose output follows WRITEMODE (NORMAL: unchanged while writing,
//     WRITETHROUGH: the new data, READBEFOREWRITE: the old data);
//   * pseudo dual port x36 (DATA_WIDTH_A = DATA_WIDTH_B = 36): port A writes {DIB, DIA} at AD[13:5]
//     with AD[3:0] the four 9-bit byte enables, port B reads {DOB, DOA};
//   * NOREG outputs, chip selects tied 0 with CSDECODE "0b000", resets tied 0.  A true dual port
//     has both ports on one clock; a pseudo dual port writes on CLKA and reads on CLKB (a ROM ties
//     port A off: CEA 0, CLKA 0).  A read on one port of a word the other port writes in the same
//     cycle returns the old word (Amaranth's non-transparent read ports).
//   * INITVAL_00..3F as brams_map_16kd.v packs yosys' INIT: the array is 1024 18-bit halves, half h
//     at bits 20 * (h % 16) + 17 .. 20 * (h % 16) of INITVAL_(h / 16), two padding bits per half.
// The 18 Kbit array is kept as 512 rows of 36 bits, row r = {half 2r + 1, half 2r}; a word of width
// w sits at bit w * index, and no width straddles a row.
module DP16KD(
    input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    input CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    input CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter GSR = "ENABLED";
    parameter [319:0] INITVAL_00 = 320'h0;
    parameter [319:0] INITVAL_01 = 320'h0;
    parameter [319:0] INITVAL_02 = 320'h0;
    parameter [319:0] INITVAL_03 = 320'h0;
    parameter [319:0] INITVAL_04 = 320'h0;
    parameter [319:0] INITVAL_05 = 320'h0;
    parameter [319:0] INITVAL_06 = 320'h0;
    parameter [319:0] INITVAL_07 = 320'h0;
    parameter [319:0] INITVAL_08 = 320'h0;
    parameter [319:0] INITVAL_09 = 320'h0;
    parameter [319:0] INITVAL_0A = 320'h0;
    parameter [319:0] INITVAL_0B = 320'h0;
    parameter [319:0] INITVAL_0C = 320'h0;
    parameter [319:0] INITVAL_0D = 320'h0;
    parameter [319:0] INITVAL_0E = 320'h0;
    parameter [319:0] INITVAL_0F = 320'h0;
    parameter [319:0] INITVAL_10 = 320'h0;
    parameter [319:0] INITVAL_11 = 320'h0;
    parameter [319:0] INITVAL_12 = 320'h0;
    parameter [319:0] INITVAL_13 = 320'h0;
    parameter [319:0] INITVAL_14 = 320'h0;
    parameter [319:0] INITVAL_15 = 320'h0;
    parameter [319:0] INITVAL_16 = 320'h0;
    parameter [319:0] INITVAL_17 = 320'h0;
    parameter [319:0] INITVAL_18 = 320'h0;
    parameter [319:0] INITVAL_19 = 320'h0;
    parameter [319:0] INITVAL_1A = 320'h0;
    parameter [319:0] INITVAL_1B = 320'h0;
    parameter [319:0] INITVAL_1C = 320'h0;
    parameter [319:0] INITVAL_1D = 320'h0;
    parameter [319:0] INITVAL_1E = 320'h0;
    parameter [319:0] INITVAL_1F = 320'h0;
    parameter [319:0] INITVAL_20 = 320'h0;
    parameter [319:0] INITVAL_21 = 320'h0;
    parameter [319:0] INITVAL_22 = 320'h0;
    parameter [319:0] INITVAL_23 = 320'h0;
    parameter [319:0] INITVAL_24 = 320'h0;
    parameter [319:0] INITVAL_25 = 320'h0;
    parameter [319:0] INITVAL_26 = 320'h0;
    parameter [319:0] INITVAL_27 = 320'h0;
    parameter [319:0] INITVAL_28 = 320'h0;
    parameter [319:0] INITVAL_29 = 320'h0;
    parameter [319:0] INITVAL_2A = 320'h0;
    parameter [319:0] INITVAL_2B = 320'h0;
    parameter [319:0] INITVAL_2C = 320'h0;
    parameter [319:0] INITVAL_2D = 320'h0;
    parameter [319:0] INITVAL_2E = 320'h0;
    parameter [319:0] INITVAL_2F = 320'h0;
    parameter [319:0] INITVAL_30 = 320'h0;
    parameter [319:0] INITVAL_31 = 320'h0;
    parameter [319:0] INITVAL_32 = 320'h0;
    parameter [319:0] INITVAL_33 = 320'h0;
    parameter [319:0] INITVAL_34 = 320'h0;
    parameter [319:0] INITVAL_35 = 320'h0;
    parameter [319:0] INITVAL_36 = 320'h0;
    parameter [319:0] INITVAL_37 = 320'h0;
    parameter [319:0] INITVAL_38 = 320'h0;
    parameter [319:0] INITVAL_39 = 320'h0;
    parameter [319:0] INITVAL_3A = 320'h0;
    parameter [319:0] INITVAL_3B = 320'h0;
    parameter [319:0] INITVAL_3C = 320'h0;
    parameter [319:0] INITVAL_3D = 320'h0;
    parameter [319:0] INITVAL_3E = 320'h0;
    parameter [319:0] INITVAL_3F = 320'h0;

    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    reg [17:0] doa = 18'd0, dob = 18'd0;
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;

    reg [35:0] mem [0:511];
    localparam [20479:0] INITVAL = {INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38, INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30, INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D, INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08, INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01, INITVAL_00};
    integer i;
    initial for (i = 0; i < 512; i = i + 1) mem[i] = {INITVAL[40 * i + 20 +: 18], INITVAL[40 * i +: 18]};

    localparam PDP = DATA_WIDTH_A == 36;
    localparam W = DATA_WIDTH_A;
    localparam SHIFT = W == 1 ? 0 : W == 2 ? 1 : W == 4 ? 2 : W == 9 ? 3 : 4;     // address bits below the word

    // bit position of port p's word: index * W (TDP)
    wire [13:0] index_a = ada >> SHIFT;
    wire [13:0] index_b = adb >> SHIFT;
    wire [17:0] pos_a = index_a * W;
    wire [17:0] pos_b = index_b * W;
    wire [8:0] row_a = pos_a / 36, row_b = pos_b / 36;
    wire [5:0] col_a = pos_a % 36, col_b = pos_b % 36;
    wire [35:0] word_a = mem[row_a] >> col_a;
    wire [35:0] word_b = mem[row_b] >> col_b;
    wire [35:0] mask = W >= 36 ? {36{1'b1}} : ((36'd1 << W) - 36'd1);

    function [35:0] merge(input [35:0] old, input [35:0] data, input [5:0] col, input [3:0] lanes);
        reg [35:0] enable;
        begin
            if (W == 18) enable = {18'd0, {9{lanes[1]}}, {9{lanes[0]}}} << col;
            else enable = mask << col;
            merge = (old & ~enable) | ((data << col) & enable);
        end
    endfunction

    always @(posedge CLKB) if (PDP && CEB) {dob, doa} <= mem[adb[13:5]];

    always @(posedge CLKA) begin
        if (PDP) begin
            if (CEA & WEA)
                mem[ada[13:5]] <= (mem[ada[13:5]] & ~{{9{ada[3]}}, {9{ada[2]}}, {9{ada[1]}}, {9{ada[0]}}})
                                | ({dib, dia} & {{9{ada[3]}}, {9{ada[2]}}, {9{ada[1]}}, {9{ada[0]}}});
        end else begin
            if (CEA) begin
                if (!WEA) doa <= word_a[17:0] & mask[17:0];
                else if (WRITEMODE_A == "READBEFOREWRITE") doa <= word_a[17:0] & mask[17:0];
                else if (WRITEMODE_A == "WRITETHROUGH") doa <= dia & mask[17:0];
            end
            if (CEB) begin
                if (!WEB) dob <= word_b[17:0] & mask[17:0];
                else if (WRITEMODE_B == "READBEFOREWRITE") dob <= word_b[17:0] & mask[17:0];
                else if (WRITEMODE_B == "WRITETHROUGH") dob <= dib & mask[17:0];
            end
            if (CEA & WEA) mem[row_a] <= merge(mem[row_a], {18'd0, dia}, col_a, {2'b00, ada[1:0]});
            if (CEB & WEB) mem[row_b] <= merge(mem[row_b], {18'd0, dib}, col_b, {2'b00, adb[1:0]});
        end
    end
endmodule
