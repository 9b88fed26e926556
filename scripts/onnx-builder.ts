/**
 * A small helper for writing ONNX models from TypeScript with the onnx-proto schema, so the demo
 * model can be trained and exported without Python. Only the pieces the repo's models use.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
export type Dim = number | string;

export const FLOAT = onnx.TensorProto.DataType.FLOAT;
export const INT64 = onnx.TensorProto.DataType.INT64;
export const STRING = onnx.TensorProto.DataType.STRING;

export function valueInfo(name: string, elemType: number, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export function floatTensor(name: string, dims: number[], values: number[]): onnxProto.onnx.ITensorProto {
  return { name, dataType: FLOAT, dims, floatData: values };
}

export function int64Tensor(name: string, dims: number[], values: number[]): onnxProto.onnx.ITensorProto {
  return { name, dataType: INT64, dims, int64Data: values };
}

export function stringTensor(name: string, values: string[]): onnxProto.onnx.ITensorProto {
  return { name, dataType: STRING, dims: [values.length], stringData: values.map((v) => new TextEncoder().encode(v)) };
}

type AttrValue = number | number[] | string;

export function node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}): onnxProto.onnx.INodeProto {
  const attribute = Object.entries(attrs).map(([name, v]) => {
    const A = onnx.AttributeProto.AttributeType;
    if (Array.isArray(v)) return { name, type: A.INTS, ints: v };
    if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
    return Number.isInteger(v) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
  });
  return { opType, input: inputs, output: outputs, name: `${opType}_${outputs[0] ?? ''}`, attribute };
}

export interface GraphSpec {
  name: string;
  inputs: onnxProto.onnx.IValueInfoProto[];
  outputs: onnxProto.onnx.IValueInfoProto[];
  initializers: onnxProto.onnx.ITensorProto[];
  nodes: onnxProto.onnx.INodeProto[];
  docString?: string;
  metadata?: Record<string, string>;
}

/** Serialises a model (IR 8, opset 13). */
export function encodeModel(spec: GraphSpec): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'batch-endpoints',
    producerVersion: '1',
    docString: spec.docString ?? '',
    opsetImport: [{ domain: '', version: 13 }],
    metadataProps: Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: spec.name,
      input: spec.inputs,
      output: spec.outputs,
      initializer: spec.initializers,
      node: spec.nodes,
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
