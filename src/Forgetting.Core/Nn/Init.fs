namespace Forgetting.Nn

open Forgetting.Tensors

/// Parameter initialisers, each from an explicit key.
[<RequireQualifiedAccess>]
module Init =

    /// U(-1/√fanIn, 1/√fanIn): PyTorch's default for linear and convolution weights and biases.
    let fanInUniform (rng: Rng) (dtype: DType) (shape: int[]) (fanIn: int) =
        let bound = 1.0 / sqrt (float (max 1 fanIn))
        Tensor.uniform rng dtype shape -bound bound

    /// He (Kaiming) normal: N(0, 2/fanIn), for layers followed by a ReLU.
    let heNormal (rng: Rng) (dtype: DType) (shape: int[]) (fanIn: int) =
        Tensor.normal rng dtype shape 0.0 (sqrt (2.0 / float (max 1 fanIn)))

    /// A dense layer's weight [inputs, outputs] and bias [outputs], PyTorch's default initialisation.
    let dense (rng: Rng) (dtype: DType) (inputs: int) (outputs: int) =
        let kw, kb = Rng.split rng

        Params.ofTensors
            [ "weight", fanInUniform kw dtype [| inputs; outputs |] inputs
              "bias", fanInUniform kb dtype [| outputs |] inputs ]
